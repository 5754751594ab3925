//! Checksums and range rules that separate real identifiers from numbers
//! that merely look like them. Every function takes the digits (or
//! characters) already stripped of separators and never panics.

/// Luhn (mod 10) check over ASCII digits.
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (position, digit) in digits.iter().rev().enumerate() {
        let mut value = u32::from(digit - b'0');
        if position % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    sum.is_multiple_of(10)
}

fn prefix_number(digits: &[u8], length: usize) -> Option<u32> {
    let prefix = digits.get(..length)?;
    prefix.iter().try_fold(0u32, |acc, digit| {
        digit.is_ascii_digit().then(|| acc * 10 + u32::from(digit - b'0'))
    })
}

/// Whether the issuer prefix and the length fit a card network we know.
/// The length lists are deliberately strict: they keep 17- and 18-digit
/// identifiers that happen to pass Luhn from being taken for cards.
pub(crate) fn card_network_fits(digits: &[u8]) -> bool {
    let length = digits.len();
    let (Some(p1), Some(p2), Some(p3), Some(p4), Some(p6)) = (
        prefix_number(digits, 1),
        prefix_number(digits, 2),
        prefix_number(digits, 3),
        prefix_number(digits, 4),
        prefix_number(digits, 6),
    ) else {
        return false;
    };
    let visa = p1 == 4 && matches!(length, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && length == 16;
    let amex = matches!(p2, 34 | 37) && length == 15;
    let discover =
        (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622_126..=622_925).contains(&p6))
            && (16..=19).contains(&length);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&length);
    let unionpay = p2 == 62 && (16..=19).contains(&length);
    let diners = (p2 == 36 || p2 == 38 || (300..=305).contains(&p3)) && length == 14;
    visa || mastercard || amex || discover || jcb || unionpay || diners
}

/// US Social Security Number ranges: area 000, 666 and 900–999, group 00
/// and serial 0000 are never issued.
pub(crate) fn ssn_valid(digits: &[u8]) -> bool {
    if digits.len() != 9 {
        return false;
    }
    let (Some(area), Some(group), Some(serial)) = (
        prefix_number(digits, 3),
        digits.get(3..5).and_then(|group| prefix_number(group, 2)),
        digits.get(5..9).and_then(|serial| prefix_number(serial, 4)),
    ) else {
        return false;
    };
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn valid_date(year: u32, month: u32, day: u32) -> bool {
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

/// The structure of a Chinese resident ID without its check character:
/// a region code whose first digit is 1–8 and a real birth date.
pub(crate) fn cn_id_structure_valid(id: &[u8]) -> bool {
    if id.len() != 18 || !id.get(..17).is_some_and(|body| body.iter().all(u8::is_ascii_digit)) {
        return false;
    }
    let region_ok = id.first().is_some_and(|first| (b'1'..=b'8').contains(first));
    let birth = id.get(6..14).and_then(|birth| {
        Some((
            prefix_number(birth, 4)?,
            prefix_number(birth.get(4..)?, 2)?,
            prefix_number(birth.get(6..)?, 2)?,
        ))
    });
    region_ok
        && birth.is_some_and(|(year, month, day)| {
            (1900..=2099).contains(&year) && valid_date(year, month, day)
        })
}

/// Full GB 11643-1999 check: structure plus the ISO 7064 MOD 11-2 check
/// character (`X` stands for 10).
pub(crate) fn cn_id_valid(id: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [u8; 11] = *b"10X98765432";
    if !cn_id_structure_valid(id) {
        return false;
    }
    let sum: u32 =
        id.iter().zip(WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    let expected = CHECK.get((sum % 11) as usize).copied();
    id.get(17).map(u8::to_ascii_uppercase) == expected
}

/// IBAN length per country (ISO 13616 registry, the countries a European
/// and Asian customer base meets).
fn iban_length(country: &[u8]) -> Option<usize> {
    let length = match country {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    };
    Some(length)
}

/// The length an IBAN of this country must have, if we know the country.
pub(crate) fn iban_expected_length(country: &[u8]) -> Option<usize> {
    iban_length(country)
}

/// ISO 7064 MOD 97-10 over a compact (no spaces), upper-case IBAN.
pub(crate) fn iban_valid(compact: &[u8]) -> bool {
    let Some(country) = compact.get(..2) else {
        return false;
    };
    if iban_length(country) != Some(compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &character in tail.iter().chain(head) {
        let value = match character {
            b'0'..=b'9' => u32::from(character - b'0'),
            b'A'..=b'Z' => u32::from(character - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_known_test_cards() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4111111111111112"));
    }

    #[test]
    fn networks() {
        assert!(card_network_fits(b"2221000000000009"));
        assert!(card_network_fits(b"6222021234567890123"));
        assert!(!card_network_fits(b"9400100000000000"));
    }

    #[test]
    fn ssn_ranges() {
        assert!(ssn_valid(b"123456789"));
        assert!(!ssn_valid(b"666123456"));
        assert!(!ssn_valid(b"900123456"));
        assert!(!ssn_valid(b"123006789"));
        assert!(!ssn_valid(b"123450000"));
    }

    #[test]
    fn cn_id_check_character() {
        assert!(cn_id_valid(b"11010519491231002X"));
        assert!(cn_id_valid(b"11010519491231002x"));
        assert!(!cn_id_valid(b"110105194912310021"));
        assert!(!cn_id_valid(b"110105194902300021"));
    }

    #[test]
    fn iban_mod97() {
        assert!(iban_valid(b"DE89370400440532013000"));
        assert!(iban_valid(b"GB82WEST12345698765432"));
        assert!(!iban_valid(b"DE89370400440532013001"));
        assert!(!iban_valid(b"DE8937040044053201300"));
    }
}
