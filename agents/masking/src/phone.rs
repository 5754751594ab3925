//! Telephone numbers. A digit run is a phone when its shape says so
//! (international prefix, a national layout of a country we serve, a
//! Chinese mobile) or when a phone cue stands right before it. A bare run
//! of 10–11 digits without a cue is left alone: in CRM text it is far more
//! often a ticket number or a unix timestamp.

use phonenumber::country::Id;

/// A candidate number, as the digit-run scanner saw it.
pub(crate) struct PhoneCandidate<'a> {
    /// The digits only, in order.
    pub(crate) digits: &'a [u8],
    /// Length of every digit group.
    pub(crate) group_lengths: &'a [usize],
    /// The separators between consecutive groups (`len = groups - 1`).
    pub(crate) separators: &'a [&'a str],
    /// Whether the span starts with `+`.
    pub(crate) has_plus: bool,
    /// Whether the span starts with `(`.
    pub(crate) has_open_paren: bool,
    /// Whether a phone cue ("call me at", "电话") stands near before it.
    pub(crate) cue: bool,
}

/// Scores used for phone detections, by how strong the evidence is.
const INTERNATIONAL_SCORE: f32 = 0.95;
const MOBILE_SCORE: f32 = 0.9;
const NATIONAL_SCORE: f32 = 0.85;
const BARE_NATIONAL_SCORE: f32 = 0.8;
const CUE_SCORE: f32 = 0.7;

/// The regions whose national formats are validated with `phonenumber`
/// when a number starts with a trunk `0`.
const NATIONAL_REGIONS: [Id; 7] = [Id::GB, Id::DE, Id::FR, Id::IT, Id::ES, Id::NL, Id::CN];

/// Decide whether the candidate is a phone number; returns its score.
pub(crate) fn classify(candidate: &PhoneCandidate<'_>) -> Option<f32> {
    let digits = candidate.digits;
    if !(7..=17).contains(&digits.len()) {
        return None;
    }
    let formatted = !candidate.separators.is_empty() || candidate.has_open_paren;
    // Slashes separate area and number in German style (`030/1234567`);
    // more than one, or anything else around them, is a date.
    let slashes = candidate.separators.iter().filter(|separator| separator.contains('/')).count();
    if slashes > 1 || (slashes == 1 && candidate.group_lengths.len() != 2) {
        return None;
    }
    if candidate.has_plus
        || (digits.starts_with(b"00") && digits.len() >= 10 && (formatted || candidate.cue))
    {
        return international(candidate).then_some(INTERNATIONAL_SCORE);
    }
    if digits.len() > 12 {
        return None;
    }
    if chinese_mobile(candidate) {
        return Some(MOBILE_SCORE);
    }
    if formatted && (nanp(candidate) || chinese_landline(candidate) || european_national(candidate))
    {
        return Some(NATIONAL_SCORE);
    }
    // A bare number with a trunk `0` (`02079460958`) is a national phone
    // when libphonenumber says so: tickets, timestamps and order numbers
    // do not start with `0`.
    if !formatted && (10..=11).contains(&digits.len()) && european_national(candidate) {
        return Some(BARE_NATIONAL_SCORE);
    }
    // A cue vouches for plain or space/dash-grouped digits, never for
    // something shaped like a date (`2024-05-12`, `12 05 2024`).
    let plain_grouping =
        candidate.separators.iter().all(|separator| matches!(*separator, " " | "-"));
    let date_shaped = matches!(candidate.group_lengths, [4, 2, 2] | [2, 2, 4]);
    (candidate.cue && plain_grouping && !date_shaped && (7..=12).contains(&digits.len()))
        .then_some(CUE_SCORE)
}

/// `+cc …` or `00cc …`, validated against libphonenumber's metadata. A
/// parenthesised trunk zero (`+44 (0)20 …`) is dropped first, as dialling
/// from abroad does.
fn international(candidate: &PhoneCandidate<'_>) -> bool {
    let mut e164 = String::with_capacity(20);
    e164.push('+');
    let mut offset = 0;
    for (index, &length) in candidate.group_lengths.iter().enumerate() {
        let Some(group) = candidate.digits.get(offset..offset + length) else {
            return false;
        };
        offset += length;
        let trunk_zero = group == b"0"
            && index > 0
            && candidate
                .separators
                .get(index - 1)
                .is_some_and(|separator| separator.ends_with('('));
        if !trunk_zero {
            e164.extend(group.iter().map(|&digit| char::from(digit)));
        }
    }
    if !candidate.has_plus {
        // `00` is the international call prefix, not part of the number.
        e164.replace_range(1..3, "");
    }
    let national_length = e164.len().saturating_sub(1);
    if !(8..=15).contains(&national_length) {
        return false;
    }
    if phonenumber::parse(None, &e164).is_ok_and(|number| phonenumber::is_valid(&number)) {
        return true;
    }
    // The metadata shipped with the crate lags new area codes and mobile
    // ranges; for the two plans we know by rule, the rule decides.
    let national = e164.as_bytes();
    match national {
        [b'+', b'1', rest @ ..] => rest.len() == 10 && nanp_digits(rest),
        [b'+', b'8', b'6', rest @ ..] => {
            rest.len() == 11
                && rest.first() == Some(&b'1')
                && matches!(rest.get(1), Some(b'3'..=b'9'))
        }
        _ => false,
    }
}

/// NANP area code `[2-9][0-8]x` and exchange `[2-9]xx` over ten digits.
fn nanp_digits(digits: &[u8]) -> bool {
    matches!(digits.first(), Some(b'2'..=b'9'))
        && digits.get(1) != Some(&b'9')
        && matches!(digits.get(3), Some(b'2'..=b'9'))
}

/// Chinese mobile: `1[3-9]` and 9 more digits, plain, `138-1234-5678` or
/// `138 1234 5678`.
fn chinese_mobile(candidate: &PhoneCandidate<'_>) -> bool {
    let digits = candidate.digits;
    let shape_ok = match candidate.group_lengths {
        [11] => true,
        [3, 4, 4] => {
            candidate.separators.iter().all(|separator| *separator == " " || *separator == "-")
        }
        _ => false,
    };
    shape_ok
        && !candidate.has_open_paren
        && digits.len() == 11
        && digits.first() == Some(&b'1')
        && digits.get(1).is_some_and(|second| (b'3'..=b'9').contains(second))
}

/// North American numbering plan: `(415) 555-0123`, `415-555-0123`,
/// `415.555.0123`, `415 555 0123`, optionally with a leading `1`.
fn nanp(candidate: &PhoneCandidate<'_>) -> bool {
    let with_country_code =
        matches!((candidate.group_lengths, candidate.digits), ([1, 3, 3, 4], [b'1', ..]));
    let skip = usize::from(with_country_code);
    let (Some(lengths), Some(separators), Some(digits)) = (
        candidate.group_lengths.get(skip..),
        candidate.separators.get(skip..),
        candidate.digits.get(skip..),
    ) else {
        return false;
    };
    let ([3, 3, 4], [first, second]) = (lengths, separators) else {
        return false;
    };
    let first_ok = if candidate.has_open_paren {
        matches!(*first, ")" | ") " | ")-")
    } else {
        matches!(*first, "-" | "." | " ")
    };
    let second_ok = matches!(*second, "-" | "." | " ");
    first_ok && second_ok && nanp_digits(digits)
}

/// Chinese landline: `010-12345678`, `0755-1234567`, `(010)12345678`.
/// Beijing, Tianjin and Shanghai style area codes (`010`, `02x`) take an
/// 8-digit local number; the 4-digit area codes take 7 or 8.
fn chinese_landline(candidate: &PhoneCandidate<'_>) -> bool {
    let digits = candidate.digits;
    let [area_length, local_length] = candidate.group_lengths else {
        return false;
    };
    let separator_ok = candidate.separators.first().is_some_and(|separator| {
        matches!(*separator, "-" | " ")
            || (candidate.has_open_paren && matches!(*separator, ")" | ") "))
    });
    let area_ok = match area_length {
        3 => digits.starts_with(b"010") || digits.starts_with(b"02"),
        4 => digits.first() == Some(&b'0') && matches!(digits.get(1), Some(b'3'..=b'9')),
        _ => false,
    };
    let local_ok = match area_length {
        3 => *local_length == 8,
        _ => (7..=8).contains(local_length),
    } && matches!(digits.get(*area_length), Some(b'2'..=b'9'));
    separator_ok && area_ok && local_ok
}

/// European national formats with a trunk `0` (`020 7946 0958`,
/// `030 1234567`, `01 23 45 67 89`, and bare `01062345678`), validated
/// with `phonenumber`.
fn european_national(candidate: &PhoneCandidate<'_>) -> bool {
    let digits = candidate.digits;
    if digits.first() != Some(&b'0')
        || digits.get(1) == Some(&b'0')
        || !(9..=12).contains(&digits.len())
    {
        return false;
    }
    let Ok(national) = std::str::from_utf8(digits) else {
        return false;
    };
    NATIONAL_REGIONS.iter().any(|&region| {
        phonenumber::parse(Some(region), national)
            .is_ok_and(|number| phonenumber::is_valid(&number))
    })
}
