//! Identifiers that sort by creation time and need no coordination: 48 bits of milliseconds since
//! the epoch followed by 32 random bits, written as 20 hex digits.

use rand::Rng;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn new_id(prefix: &str) -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let random: u32 = rand::rng().random();
    format!("{prefix}{:012x}{random:08x}", millis & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_fixed_width_and_distinct() {
        let a = new_id("s_");
        let b = new_id("s_");
        assert!(a.starts_with("s_"));
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
    }
}
