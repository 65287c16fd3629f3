//! Checksums and validity rules that turn a pattern match into a finding: Luhn for card numbers,
//! the SSA's rules for US social security numbers, ISO 13616 mod-97 for IBANs.

/// Luhn check over ASCII digits (separators skipped).
pub fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        count += 1;
    }
    count > 0 && sum.is_multiple_of(10)
}

/// A plausible payment card number: 13–19 digits, a known major-industry prefix, not one digit
/// repeated, and a valid Luhn checksum.
pub fn card(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len())
        && matches!(digits[0], b'2'..=b'6')
        && digits.iter().any(|&d| d != digits[0])
        && luhn(digits.iter().copied())
}

/// A US SSN in its three groups: area 001–899 except 666, group 01–99, serial 0001–9999.
pub fn ssn(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    let num = |s: &[u8]| s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    let (a, g, s) = (num(area), num(group), num(serial));
    a != 0 && a != 666 && a < 900 && g != 0 && s != 0
}

/// The IBAN length of each country that issues them (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS.iter().find(|(c, _)| &c[..] == country).map(|&(_, len)| len)
}

/// ISO 13616: move the first four characters to the end, read letters as 10–35, and the whole
/// number mod 97 must be 1. `chars` are uppercase letters and digits, separators removed.
pub fn iban(chars: &[u8]) -> bool {
    if chars.len() < 15 || !chars[2].is_ascii_digit() || !chars[3].is_ascii_digit() {
        return false;
    }
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_numbers_and_rejects_one_digit_off() {
        assert!(card(b"4111111111111111"));
        assert!(card(b"5500005555555559"));
        assert!(card(b"378282246310005"));
        assert!(!card(b"4111111111111112"));
        assert!(!card(b"0000000000000000"));
        assert!(!card(b"1234567812345670"), "prefix 1 is not a card network");
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn(b"123", b"45", b"6789"));
        assert!(!ssn(b"000", b"45", b"6789"));
        assert!(!ssn(b"666", b"45", b"6789"));
        assert!(!ssn(b"900", b"45", b"6789"));
        assert!(!ssn(b"123", b"00", b"6789"));
        assert!(!ssn(b"123", b"45", b"0000"));
    }

    #[test]
    fn iban_checksum() {
        assert!(iban(b"DE89370400440532013000"));
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(!iban(b"DE89370400440532013001"));
        assert_eq!(iban_length(b"DE"), Some(22));
        assert_eq!(iban_length(b"ZZ"), None);
    }
}
