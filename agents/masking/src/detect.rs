//! The detector: finds candidate spans per entity type, validates them,
//! resolves overlaps and returns non-overlapping entities in text order.
//!
//! Boundaries are checked in code rather than with `\b`: `\b` does not
//! fire between a Han character and a digit (`手机号13812345678`), and the
//! `regex` crate has no lookaround.

use std::net::Ipv6Addr;
use std::sync::Arc;

use regex::Regex;
use thiserror::Error;

use crate::checks;
use crate::config::DetectorConfig;
use crate::entity::{Entity, EntityType};
use crate::person::PersonRules;
use crate::phone::{self, PhoneCandidate};

/// Why a detector could not be built.
#[derive(Debug, Error)]
pub enum DetectorError {
    /// A custom pattern is not a valid regular expression.
    #[error("custom pattern {name} does not compile")]
    InvalidPattern {
        /// The configured name of the pattern.
        name: String,
        /// What the regex parser said.
        #[source]
        source: Box<regex::Error>,
    },
    /// A custom pattern name cannot be used in tokens.
    #[error(
        "custom pattern name {name:?} must be upper-case ASCII, digits and `_`, start with a letter and not be a built-in type"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A built-in pattern failed to compile; this is a bug in this crate.
    #[error("built-in pattern does not compile")]
    BuiltIn(#[source] Box<regex::Error>),
}

impl DetectorError {
    fn built_in(error: regex::Error) -> Self {
        Self::BuiltIn(Box::new(error))
    }
}

/// A detection before overlap resolution.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) entity_type: EntityType,
    pub(crate) score: f32,
}

struct CustomRule {
    entity_type: EntityType,
    regex: Regex,
    score: f32,
}

/// Finds personal data in text. Build it once (it compiles every
/// pattern) and share it; detection takes `&self` and allocates little.
pub struct Detector {
    email: Regex,
    number_run: Regex,
    cn_id: Regex,
    iban: Regex,
    ipv6: Regex,
    person: PersonRules,
    custom: Vec<CustomRule>,
}

/// Cheap facts about a text, gathered in one pass, that let whole
/// detectors be skipped: most CRM messages have no `@` and few digits.
struct Profile {
    digits: usize,
    has_at: bool,
    colons: usize,
    has_upper: bool,
    has_non_ascii: bool,
}

impl Profile {
    fn of(text: &str) -> Self {
        let mut profile =
            Self { digits: 0, has_at: false, colons: 0, has_upper: false, has_non_ascii: false };
        for &byte in text.as_bytes() {
            match byte {
                b'0'..=b'9' => profile.digits += 1,
                b'@' => profile.has_at = true,
                b':' => profile.colons += 1,
                b'A'..=b'Z' => profile.has_upper = true,
                0x80..=0xFF => profile.has_non_ascii = true,
                _ => {}
            }
        }
        profile
    }
}

const PHONE_CUES_ASCII: [&str; 13] = [
    "call", "phone", "tel", "mobile", "cell", "reach me", "text me", "whatsapp", "ring", "fax",
    "dial", "ph", "line",
];
const PHONE_CUES_CHINESE: [&str; 11] =
    ["电话", "手机", "回电", "致电", "联系方式", "拨打", "打给", "座机", "热线", "来电", "微信"];
const SSN_CUES: [&str; 3] = ["ssn", "social security", "社会安全"];
/// Words that name a number as a reference, not a phone or an SSN.
const REFERENCE_CUES_ASCII: [&str; 7] =
    ["ticket", "order", "invoice", "case", "tracking", "reference", "ref"];
const REFERENCE_CUES_CHINESE: [&str; 6] = ["工单", "订单", "单号", "编号", "发票", "快递"];

/// How many characters before a number a cue may stand.
const CUE_WINDOW_CHARS: usize = 24;

impl Detector {
    /// Compile the built-in patterns and the configured custom patterns.
    pub fn new(config: &DetectorConfig) -> Result<Self, DetectorError> {
        let mut custom = Vec::with_capacity(config.custom_patterns.len());
        for pattern in &config.custom_patterns {
            if !valid_custom_name(&pattern.name) {
                return Err(DetectorError::InvalidName { name: pattern.name.clone() });
            }
            let regex =
                Regex::new(&pattern.pattern).map_err(|source| DetectorError::InvalidPattern {
                    name: pattern.name.clone(),
                    source: Box::new(source),
                })?;
            custom.push(CustomRule {
                entity_type: EntityType::Custom(Arc::from(pattern.name.as_str())),
                regex,
                score: pattern.score.unwrap_or(0.9),
            });
        }
        Ok(Self {
            // ASCII local part only, so Chinese text in front of an address
            // is never swallowed (`我的邮箱是zhang.wei@example.com`).
            email: Regex::new(
                r"[A-Za-z0-9](?:[A-Za-z0-9._%+\-]*[A-Za-z0-9_%+\-])?@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}",
            )
            .map_err(DetectorError::built_in)?,
            // Digit groups joined by short separators: one run covers
            // `+86 138 1234 5678`, `(415) 555-0123`, `4111-1111-1111-1111`
            // and `192.168.1.10`; the run is then split into candidates.
            number_run: Regex::new(r"[+(]?[0-9](?:[0-9]|[ \-./()]{1,3}[0-9])*").map_err(DetectorError::built_in)?,
            cn_id: Regex::new(r"[0-9]{17}[0-9Xx]").map_err(DetectorError::built_in)?,
            iban: Regex::new(r"[A-Za-z]{2}[0-9]{2}").map_err(DetectorError::built_in)?,
            ipv6: Regex::new(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*[0-9A-Fa-f]").map_err(DetectorError::built_in)?,
            person: PersonRules::new().map_err(DetectorError::built_in)?,
            custom,
        })
    }

    /// Detect personal data in `text`. `known_names` are the names the CRM
    /// already holds for this customer and its contacts. The result is
    /// sorted by `start` and has no overlapping spans.
    pub fn detect<S: AsRef<str>>(&self, text: &str, known_names: &[S]) -> Vec<Entity> {
        let profile = Profile::of(text);
        let mut candidates = Vec::new();
        if profile.has_at {
            self.emails(text, &mut candidates);
        }
        if profile.digits >= 4 {
            self.number_runs(text, &mut candidates);
        }
        if profile.digits >= 17 {
            self.cn_ids(text, &mut candidates);
        }
        if profile.digits >= 8 {
            self.ibans(text, &mut candidates);
        }
        if profile.colons >= 2 {
            self.ipv6s(text, &mut candidates);
        }
        self.person.known(text, known_names, &mut candidates);
        if profile.has_upper {
            self.person.english(text, &mut candidates);
        }
        if profile.has_non_ascii {
            self.person.chinese(text, &mut candidates);
        }
        for rule in &self.custom {
            for found in rule.regex.find_iter(text) {
                if !found.is_empty() {
                    candidates.push(Candidate {
                        start: found.start(),
                        end: found.end(),
                        entity_type: rule.entity_type.clone(),
                        score: rule.score,
                    });
                }
            }
        }
        if candidates.is_empty() {
            return Vec::new();
        }
        let mut accepted = resolve(candidates);
        mask_repeats(text, &mut accepted);
        accepted
            .into_iter()
            .map(|candidate| Entity {
                start: candidate.start,
                end: candidate.end,
                entity_type: candidate.entity_type,
                score: candidate.score,
            })
            .collect()
    }

    fn emails(&self, text: &str, out: &mut Vec<Candidate>) {
        for found in self.email.find_iter(text) {
            // A letter or digit right after the top-level domain means the
            // match stopped inside a longer token.
            if !text.as_bytes().get(found.end()).is_some_and(u8::is_ascii_alphanumeric) {
                out.push(Candidate {
                    start: found.start(),
                    end: found.end(),
                    entity_type: EntityType::Email,
                    score: 1.0,
                });
            }
        }
    }

    fn cn_ids(&self, text: &str, out: &mut Vec<Candidate>) {
        for found in self.cn_id.find_iter(text) {
            if standalone(text, found.start(), found.end())
                && checks::cn_id_valid(found.as_str().as_bytes())
            {
                out.push(Candidate {
                    start: found.start(),
                    end: found.end(),
                    entity_type: EntityType::CnId,
                    score: 1.0,
                });
            }
        }
    }

    /// IBANs are found by their country and check digits, then walked in
    /// code for exactly the country's length, so that words after a
    /// pretty-printed IBAN are not taken into it. Case does not matter: an
    /// IBAN typed in lower case on a phone is as much an account as one
    /// printed on a statement.
    fn ibans(&self, text: &str, out: &mut Vec<Candidate>) {
        let bytes = text.as_bytes();
        for found in self.iban.find_iter(text) {
            let start = found.start();
            if start
                .checked_sub(1)
                .and_then(|before| bytes.get(before))
                .is_some_and(u8::is_ascii_alphanumeric)
            {
                continue;
            }
            let country = found.as_str().as_bytes().get(..2).unwrap_or_default();
            let Some(length) = checks::iban_expected_length(&country.to_ascii_uppercase()) else {
                continue;
            };
            let mut compact = [0u8; 34];
            let mut count = 0;
            let mut position = start;
            while count < length {
                match bytes.get(position) {
                    Some(&byte) if byte.is_ascii_alphanumeric() => {
                        if let Some(slot) = compact.get_mut(count) {
                            *slot = byte.to_ascii_uppercase();
                        }
                        count += 1;
                        position += 1;
                    }
                    Some(b' ')
                        if count >= 4
                            && bytes.get(position + 1).is_some_and(u8::is_ascii_alphanumeric) =>
                    {
                        position += 1;
                    }
                    _ => break,
                }
            }
            let glued_after = bytes.get(position).is_some_and(u8::is_ascii_alphanumeric);
            if count == length
                && !glued_after
                && checks::iban_valid(compact.get(..length).unwrap_or_default())
            {
                out.push(Candidate {
                    start,
                    end: position,
                    entity_type: EntityType::Iban,
                    score: 1.0,
                });
            }
        }
    }

    fn ipv6s(&self, text: &str, out: &mut Vec<Candidate>) {
        let bytes = text.as_bytes();
        for found in self.ipv6.find_iter(text) {
            let candidate = found.as_str();
            let glued = |byte: Option<&u8>| {
                byte.is_some_and(|&byte| byte.is_ascii_alphanumeric() || byte == b':')
            };
            let start = found.start();
            if glued(start.checked_sub(1).and_then(|before| bytes.get(before)))
                || glued(bytes.get(found.end()))
            {
                continue;
            }
            // Times (`10:30:15`) are not addresses: require the `::`
            // shorthand or all eight groups, and a successful parse.
            let groups = candidate.split(':').count();
            if (candidate.contains("::") || groups == 8) && candidate.parse::<Ipv6Addr>().is_ok() {
                out.push(Candidate {
                    start,
                    end: found.end(),
                    entity_type: EntityType::IpAddress,
                    score: 0.9,
                });
            }
        }
    }

    fn number_runs(&self, text: &str, out: &mut Vec<Candidate>) {
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for found in self.number_run.find_iter(text) {
            groups.clear();
            let bytes = text.as_bytes();
            let mut position = found.start();
            while position < found.end() {
                if bytes.get(position).is_some_and(u8::is_ascii_digit) {
                    let group_start = position;
                    while position < found.end()
                        && bytes.get(position).is_some_and(u8::is_ascii_digit)
                    {
                        position += 1;
                    }
                    groups.push((group_start, position));
                } else {
                    position += 1;
                }
            }
            let digit_count: usize = groups.iter().map(|(start, end)| end - start).sum();
            if digit_count < 4 {
                continue;
            }
            let run = Run { text, start: found.start(), end: found.end(), groups: &groups };
            run.classify_all(out);
        }
    }
}

/// A maximal run of digit groups.
struct Run<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    groups: &'a [(usize, usize)],
}

/// No entity spans more digit groups than this (`+33 1 23 45 67 89`).
const MAX_GROUPS: usize = 8;

impl Run<'_> {
    fn separator(&self, after_group: usize) -> &str {
        let (Some(&(_, end)), Some(&(next_start, _))) =
            (self.groups.get(after_group), self.groups.get(after_group + 1))
        else {
            return "";
        };
        self.text.get(end..next_start).unwrap_or_default()
    }

    /// May a candidate start at group `index`? The run's own start must
    /// not be glued to a word, a reference mark or a hyphenated code
    /// (`INV-2024-0001`, `#123456789`); inside the run it must follow a
    /// space, so `2024-05-12` never yields `05-12…`.
    fn left_ok(&self, index: usize) -> bool {
        if index > 0 {
            let separator = self.separator(index - 1);
            return separator.contains(' ') || separator.ends_with('(');
        }
        let bytes = self.text.as_bytes();
        let before = self.start.checked_sub(1).and_then(|position| bytes.get(position)).copied();
        let before_that =
            self.start.checked_sub(2).and_then(|position| bytes.get(position)).copied();
        match before {
            Some(byte) if byte.is_ascii_alphanumeric() || byte == b'#' || byte == b'_' => false,
            Some(b'-' | b'.' | b'/') => {
                !before_that.is_some_and(|byte| byte.is_ascii_alphanumeric())
            }
            _ => true,
        }
    }

    /// May a candidate end at group `index`? Mirrors `left_ok`.
    fn right_ok(&self, index: usize) -> bool {
        if index + 1 < self.groups.len() {
            return self.separator(index).contains(' ');
        }
        let bytes = self.text.as_bytes();
        let after = bytes.get(self.end).copied();
        let after_that = bytes.get(self.end + 1).copied();
        match after {
            Some(byte) if byte.is_ascii_alphanumeric() || byte == b'_' => false,
            Some(b'-' | b'/') => !after_that.is_some_and(|byte| byte.is_ascii_alphanumeric()),
            Some(b'.') => !after_that.is_some_and(|byte| byte.is_ascii_digit()),
            _ => true,
        }
    }

    /// The byte where a candidate starting at group `index` begins: a `+`
    /// or `(` glued to the group belongs to it.
    fn span_start(&self, index: usize) -> usize {
        let Some(&(group_start, _)) = self.groups.get(index) else {
            return self.start;
        };
        let bytes = self.text.as_bytes();
        let mut start = group_start;
        while start > self.start && matches!(bytes.get(start - 1), Some(b'+' | b'(')) {
            start -= 1;
        }
        start
    }

    /// Walk the run left to right, taking at each group the longest valid
    /// candidate that starts there.
    fn classify_all(&self, out: &mut Vec<Candidate>) {
        let mut phone_cue: Option<bool> = None;
        let mut ssn_cue: Option<bool> = None;
        let mut first = 0;
        let mut after_entity = false;
        while first < self.groups.len() {
            let mut taken = None;
            if self.left_ok(first) {
                let last_limit = (first + MAX_GROUPS).min(self.groups.len());
                for last in (first..last_limit).rev() {
                    if !self.right_ok(last) {
                        continue;
                    }
                    let cues = (&mut phone_cue, &mut ssn_cue);
                    if let Some(found) = self.classify(first, last, cues, after_entity) {
                        taken = Some((last, found));
                        break;
                    }
                }
            }
            match taken {
                Some((last, (entity_type, score))) => {
                    let end = self.groups.get(last).map_or(self.end, |&(_, end)| end);
                    out.push(Candidate { start: self.span_start(first), end, entity_type, score });
                    first = last + 1;
                    after_entity = true;
                }
                None => {
                    first += 1;
                    after_entity = false;
                }
            }
        }
    }

    fn classify(
        &self,
        first: usize,
        last: usize,
        (phone_cue, ssn_cue): (&mut Option<bool>, &mut Option<bool>),
        after_entity: bool,
    ) -> Option<(EntityType, f32)> {
        let groups = self.groups.get(first..=last)?;
        let digit_count: usize = groups.iter().map(|(start, end)| end - start).sum();
        if !(4..=19).contains(&digit_count) {
            return None;
        }
        let bytes = self.text.as_bytes();
        let mut digits = [0u8; 19];
        let mut lengths = [0usize; MAX_GROUPS];
        let mut offset = 0;
        for (index, &(start, end)) in groups.iter().enumerate() {
            let group = bytes.get(start..end)?;
            digits.get_mut(offset..offset + group.len())?.copy_from_slice(group);
            *lengths.get_mut(index)? = group.len();
            offset += group.len();
        }
        let digits = digits.get(..digit_count)?;
        let lengths = lengths.get(..groups.len())?;
        let mut separators = [""; MAX_GROUPS];
        for index in first..last {
            *separators.get_mut(index - first)? = self.separator(index);
        }
        let separators = separators.get(..last - first)?;
        let same_separator = separators.windows(2).all(|pair| pair.first() == pair.last());
        // A grouped candidate cannot start in the middle of a run that
        // keeps the same grouping: `9400 1655 4674 0712 2215 60` is one
        // tracking number, not a phone starting at `4674`. Right after a
        // detected entity the run is split already: in
        // `+86 130 0000 0000 4111 1111 1111 1111` the card follows a phone.
        if first > 0 && !after_entity && !separators.is_empty() {
            let before = self.separator(first - 1);
            if separators.iter().all(|separator| *separator == before) {
                return None;
            }
        }

        if let Some(found) = card(digits, lengths, separators, same_separator) {
            return Some(found);
        }
        if digit_count == 9 {
            let dashed = lengths == [3, 2, 4]
                && same_separator
                && separators.iter().all(|s| *s == "-" || *s == " ");
            if dashed && checks::ssn_valid(digits) {
                return Some((EntityType::UsSsn, 0.85));
            }
            if lengths == [9] && checks::ssn_valid(digits) {
                let cue = *ssn_cue
                    .get_or_insert_with(|| cue_before(self.text, self.start, &SSN_CUES, &[]));
                if cue {
                    return Some((EntityType::UsSsn, 0.8));
                }
            }
        }
        if lengths.len() == 4
            && separators.iter().all(|s| *s == ".")
            && groups.iter().all(|&(start, end)| ipv4_octet(bytes.get(start..end)))
        {
            return Some((EntityType::IpAddress, 0.9));
        }
        let span_start = self.span_start(first);
        let prefix = bytes.get(span_start..groups.first()?.0).unwrap_or_default();
        let cue = *phone_cue.get_or_insert_with(|| {
            cue_before(self.text, self.start, &PHONE_CUES_ASCII, &PHONE_CUES_CHINESE)
        });
        let candidate = PhoneCandidate {
            digits,
            group_lengths: lengths,
            separators,
            has_plus: prefix.contains(&b'+'),
            has_open_paren: prefix.contains(&b'('),
            cue,
        };
        phone::classify(&candidate).map(|score| (EntityType::Phone, score))
    }
}

/// Card numbers: plain, or grouped 4-4-4-4(-1..3) / Amex 4-6-5 / Diners
/// 4-6-4 with one consistent separator; Luhn and a known network.
fn card(
    digits: &[u8],
    lengths: &[usize],
    separators: &[&str],
    same_separator: bool,
) -> Option<(EntityType, f32)> {
    if !(13..=19).contains(&digits.len()) {
        return None;
    }
    let shape_ok = match lengths {
        [_] => true,
        [4, 4, 4, 4] | [4, 6, 5] | [4, 6, 4] | [4, 4, 4, 1..=4] => true,
        [4, 4, 4, 4, tail] => (1..=3).contains(tail),
        _ => false,
    };
    let separator_ok =
        same_separator && separators.iter().all(|separator| *separator == " " || *separator == "-");
    // An 18-digit number shaped like a Chinese ID (region code and a real
    // birth date) is a mistyped ID, not a card, even if Luhn passes.
    let looks_like_cn_id = digits.len() == 18 && checks::cn_id_structure_valid(digits);
    (shape_ok
        && separator_ok
        && !looks_like_cn_id
        && checks::luhn_valid(digits)
        && checks::card_network_fits(digits))
    .then_some((EntityType::CreditCard, 0.95))
}

fn ipv4_octet(group: Option<&[u8]>) -> bool {
    let Some(group) = group else {
        return false;
    };
    if !(1..=3).contains(&group.len()) {
        return false;
    }
    let value =
        group.iter().fold(0u32, |acc, digit| acc * 10 + u32::from(digit.wrapping_sub(b'0')));
    value <= 255 && (group.len() == 1 || group.first() != Some(&b'0'))
}

/// Whether `text[start..end]` stands alone: not glued to an ASCII letter
/// or digit on either side.
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let before = start.checked_sub(1).and_then(|position| bytes.get(position));
    !before.is_some_and(u8::is_ascii_alphanumeric)
        && !bytes.get(end).is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether one of the cues stands within `CUE_WINDOW_CHARS` characters
/// before `start`. ASCII cues must start a word ("tel" in "hotel" is no
/// cue); Chinese cues need no boundary.
fn cue_before(text: &str, start: usize, ascii_cues: &[&str], chinese_cues: &[&str]) -> bool {
    let window_start = text
        .get(..start)
        .unwrap_or_default()
        .char_indices()
        .rev()
        .take(CUE_WINDOW_CHARS)
        .last()
        .map_or(start, |(position, _)| position);
    let Some(window) = text.get(window_start..start) else {
        return false;
    };
    // A cue speaks for the number right after it, not for a second number
    // further on ("手机188-7951-9775。工单号 6165960733").
    let window = match window.rfind(|character: char| character.is_ascii_digit()) {
        Some(last_digit) => window.get(last_digit + 1..).unwrap_or_default(),
        None => window,
    };
    // Nor across a sentence end ("…over phone. Ticket 8827953019"); a
    // period inside "Tel. +44…" is no sentence end.
    let window = match sentence_start(window) {
        Some(start) => window.get(start..).unwrap_or_default(),
        None => window,
    };
    let lowered = window.to_ascii_lowercase();
    let Some(cue_end) = last_cue_end(&lowered, ascii_cues, chinese_cues) else {
        return false;
    };
    // A reference named between the cue and the number speaks for the
    // number instead ("Phone me about 工单号 7515303512").
    let between = lowered.get(cue_end..).unwrap_or_default();
    last_cue_end(between, &REFERENCE_CUES_ASCII, &REFERENCE_CUES_CHINESE).is_none()
}

/// Where the last cue found in `lowered` ends. ASCII cues must start a
/// word ("tel" in "hotel" is no cue), and short ones must end one too
/// ("ph" in "Phillip" is none); Chinese cues need no boundary.
fn last_cue_end(lowered: &str, ascii_cues: &[&str], chinese_cues: &[&str]) -> Option<usize> {
    let bytes = lowered.as_bytes();
    let letter = |position: Option<usize>| {
        position.and_then(|position| bytes.get(position)).is_some_and(u8::is_ascii_alphabetic)
    };
    let ascii = ascii_cues.iter().flat_map(|cue| {
        lowered.match_indices(cue).filter_map(move |(position, _)| {
            let end = position + cue.len();
            let word_start = !letter(position.checked_sub(1));
            let word_end = cue.len() > 3 || !letter(Some(end));
            (word_start && word_end).then_some(end)
        })
    });
    let chinese = chinese_cues
        .iter()
        .flat_map(|cue| lowered.match_indices(cue).map(move |(position, _)| position + cue.len()));
    ascii.chain(chinese).max()
}

/// Byte offset just after the last sentence end in `window`: `。！？!?`,
/// a line break, or `. ` followed by an upper-case letter.
fn sentence_start(window: &str) -> Option<usize> {
    let bytes = window.as_bytes();
    window
        .char_indices()
        .rev()
        .find(|&(position, character)| match character {
            '。' | '！' | '？' | '!' | '?' | '\n' => true,
            '.' => {
                bytes.get(position + 1) == Some(&b' ')
                    && bytes.get(position + 2).is_some_and(u8::is_ascii_uppercase)
            }
            _ => false,
        })
        .map(|(position, character)| position + character.len_utf8())
}

/// Keep the best non-overlapping candidates: higher score first, then the
/// longer span, then the earlier one.
fn resolve(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(|left, right| {
        right
            .score
            .total_cmp(&left.score)
            .then((right.end - right.start).cmp(&(left.end - left.start)))
            .then(left.start.cmp(&right.start))
    });
    let mut accepted: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if accepted.iter().all(|taken| taken.end <= candidate.start || candidate.end <= taken.start)
        {
            accepted.push(candidate);
        }
    }
    accepted.sort_by_key(|candidate| candidate.start);
    accepted
}

/// Once a value is known to be personal data (say a name introduced by
/// "I'm"), every other occurrence in the same text is masked too, even one
/// glued to other characters, so the masked text never shows a detected
/// value.
fn mask_repeats(text: &str, accepted: &mut Vec<Candidate>) {
    let mut extra = Vec::new();
    for candidate in accepted.iter() {
        let Some(value) = text.get(candidate.start..candidate.end) else {
            continue;
        };
        // Occurrences may overlap each other; a blocked one must not hide
        // a free one that starts inside it, so the search steps one
        // character at a time past blocked matches.
        let step = value.chars().next().map_or(1, char::len_utf8);
        let mut from = 0;
        while let Some(offset) = text.get(from..).and_then(|rest| rest.find(value)) {
            let start = from + offset;
            let end = start + value.len();
            let free = accepted
                .iter()
                .chain(extra.iter())
                .all(|taken: &Candidate| taken.end <= start || end <= taken.start);
            if free {
                extra.push(Candidate {
                    start,
                    end,
                    entity_type: candidate.entity_type.clone(),
                    score: candidate.score,
                });
                from = end;
            } else {
                from = start + step;
            }
        }
    }
    if !extra.is_empty() {
        accepted.extend(extra);
        accepted.sort_by_key(|candidate| candidate.start);
    }
}

fn valid_custom_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_uppercase())
        && characters.all(|character| {
            character.is_ascii_uppercase() || character.is_ascii_digit() || character == '_'
        })
        && !EntityType::BUILT_IN_NAMES.contains(&name)
        && name != crate::token::LITERAL_TYPE
}
