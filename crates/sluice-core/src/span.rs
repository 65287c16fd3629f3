//! Lengths of time as operators write them in the configuration and on the command line: `90s`,
//! `30m`, `2h`, `1d`, or a sum such as `1h30m`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A length of time written as `<number><unit>…` (units `s`, `m`, `h`, `d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    pub fn as_us(self) -> i64 {
        i64::try_from(self.0.as_micros()).unwrap_or(i64::MAX)
    }

    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not a length of time (write e.g. 90s, 30m, 2h, 1d or 1h30m)");
        if text.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut number: Option<u64> = None;
        for c in text.chars() {
            if let Some(d) = c.to_digit(10) {
                number =
                    Some(number.unwrap_or(0).checked_mul(10).and_then(|n| n.checked_add(d.into())).ok_or_else(bad)?);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n = number.take().ok_or_else(bad)?;
            total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        }
        if number.is_some() {
            return Err(bad());
        }
        Ok(Span::secs(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(Span::parse("90s"), Ok(Span::secs(90)));
        assert_eq!(Span::parse("30m"), Ok(Span::secs(1800)));
        assert_eq!(Span::parse("1h30m"), Ok(Span::secs(5400)));
        assert_eq!(Span::parse("1d"), Ok(Span::secs(86_400)));
        assert_eq!(Span::secs(5400).to_string(), "1h30m");
    }

    #[test]
    fn rejects_what_is_not_a_span() {
        for bad in ["", "30", "m", "3x", "1h 30m", "99999999999999999999d"] {
            assert!(Span::parse(bad).is_err(), "{bad:?}");
        }
    }
}
