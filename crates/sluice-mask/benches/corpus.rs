//! The mixed corpus the detector benchmark and the false-positive count read.

/// Values like those of real results: prose, log lines, JSON documents, ids, timestamps, UUIDs
/// and amounts; with `sensitive`, one value in 25 also carries something sensitive (the same
/// values either way: the generator draws the same numbers).
pub fn values(sensitive: bool) -> Vec<Vec<u8>> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words = [
        "the",
        "order",
        "shipped",
        "customer",
        "asked",
        "about",
        "invoice",
        "delivery",
        "refund",
        "status",
        "warehouse",
        "payment",
        "received",
        "pending",
        "review",
        "account",
        "updated",
        "note",
        "call",
        "back",
    ];
    let samples = [
        "card 4111 1111 1111 1111",
        "ssn 123-45-6789",
        "mail jane.doe@example.com",
        "tel +44 20 7946 0958",
        "key AKIAIOSFODNN7EXAMPLE",
        "iban DE89 3704 0044 0532 0130 00",
    ];
    let mut values = Vec::new();
    for i in 0..20_000u64 {
        let r = next();
        let mut v = String::new();
        match i % 4 {
            0 => {
                for _ in 0..(8 + r % 20) {
                    v.push_str(words[(next() % words.len() as u64) as usize]);
                    v.push(' ');
                }
            }
            1 => v.push_str(&format!(
                "2026-11-{:02} 12:{:02}:{:02}.{:06}+00 INFO request {} took {} ms from 10.0.{}.{}",
                1 + r % 28, r % 60, (r >> 8) % 60, r % 1_000_000, r % 100_000, r % 900, r % 256, (r >> 16) % 256
            )),
            2 => v.push_str(&format!(
                r#"{{"id": {}, "order": "ORD-2026-{:06}", "amount": {}.{:02}, "uuid": "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", "items": [{}, {}]}}"#,
                r % 10_000_000, r % 1_000_000, r % 10_000, r % 100, r as u32, (r >> 32) as u16, r % 4096,
                (r >> 12) % 4096, r % (1 << 48), r % 1000, (r >> 10) % 1000
            )),
            _ => v.push_str(&format!("{}", r % 100_000_000)),
        }
        let (roll, pick) = (next(), next());
        if sensitive && roll % 25 == 0 {
            v.push_str(samples[(pick % samples.len() as u64) as usize]);
        }
        values.push(v.into_bytes());
    }
    values
}
