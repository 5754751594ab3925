//! Person names: the names the CRM already knows for this customer, and
//! names that a cue introduces ("my name is …", "我是…").

use std::collections::HashSet;

use regex::Regex;

use crate::detect::Candidate;
use crate::entity::EntityType;
use crate::surnames::{COMPOUND_SURNAMES, is_single_surname};

const KNOWN_FULL_SCORE: f32 = 0.95;
/// Below cue-introduced names, so that "Contact: Danielle Bell" keeps the
/// whole name when the CRM knows another "Bell".
const KNOWN_PART_SCORE: f32 = 0.7;
const CUE_SCORE: f32 = 0.75;

/// Capitalised words that follow an English cue without being a name
/// ("I'm Interested", "Hi Team", "This is Urgent"). Compared lower-case.
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a",
    "able",
    "about",
    "afraid",
    "again",
    "all",
    "also",
    "always",
    "an",
    "and",
    "any",
    "anyone",
    "april",
    "are",
    "around",
    "as",
    "at",
    "attaching",
    "august",
    "available",
    "away",
    "back",
    "based",
    "being",
    "best",
    "billing",
    "both",
    "busy",
    "but",
    "by",
    "calling",
    "ceo",
    "cfo",
    "charge",
    "checking",
    "cto",
    "client",
    "clients",
    "colleague",
    "contact",
    "concerned",
    "confident",
    "confused",
    "contacting",
    "currently",
    "customer",
    "customers",
    "dear",
    "december",
    "definitely",
    "delighted",
    "department",
    "director",
    "disappointed",
    "done",
    "eager",
    "everybody",
    "everyone",
    "excited",
    "february",
    "fine",
    "following",
    "folks",
    "for",
    "forwarding",
    "free",
    "friday",
    "friends",
    "from",
    "frustrated",
    "fw",
    "fwd",
    "getting",
    "glad",
    "going",
    "good",
    "grateful",
    "great",
    "guys",
    "happy",
    "having",
    "he",
    "hello",
    "her",
    "here",
    "hey",
    "hi",
    "him",
    "his",
    "hoping",
    "how",
    "i",
    "ill",
    "in",
    "interested",
    "is",
    "it",
    "its",
    "january",
    "july",
    "june",
    "just",
    "kind",
    "kindly",
    "looking",
    "madam",
    "manager",
    "march",
    "may",
    "me",
    "monday",
    "more",
    "mr",
    "mrs",
    "ms",
    "much",
    "my",
    "new",
    "no",
    "not",
    "november",
    "now",
    "october",
    "of",
    "off",
    "ok",
    "okay",
    "on",
    "only",
    "our",
    "out",
    "over",
    "please",
    "pleased",
    "positive",
    "pretty",
    "quite",
    "re",
    "reaching",
    "ready",
    "really",
    "regarding",
    "regards",
    "replying",
    "responsible",
    "sales",
    "saturday",
    "says",
    "sending",
    "september",
    "she",
    "sincerely",
    "sir",
    "so",
    "sorry",
    "still",
    "sunday",
    "support",
    "sure",
    "team",
    "thank",
    "thanks",
    "that",
    "the",
    "their",
    "them",
    "there",
    "these",
    "they",
    "this",
    "thursday",
    "to",
    "today",
    "tomorrow",
    "too",
    "trying",
    "tuesday",
    "unable",
    "unhappy",
    "unsure",
    "urgent",
    "us",
    "very",
    "waiting",
    "we",
    "wednesday",
    "well",
    "what",
    "when",
    "where",
    "who",
    "will",
    "with",
    "working",
    "worried",
    "writing",
    "yes",
    "yesterday",
    "you",
    "your",
    "yours",
];

/// Characters that end a Chinese given name: particles, verbs and
/// title characters that commonly follow a name in a sentence.
const CHINESE_NAME_STOPS: &str = "的是在和与了也就都要想来去说从给把被对我你他她们这那有电手邮号先女经总请吗呢吧啊公司负责部门客户联系微信今昨现已将会需";

/// Stop characters that never end a name even before punctuation: titles
/// and plurals ("李总，", "王先生", "张经理", "客户们").
const CHINESE_TITLES: &str = "先女经总们";

/// Words that are names as often as not ("April Bailey", "June Armstrong")
/// yet stop a name on their own ("This is April 3rd", "May I ask"): a name
/// when a capitalised word that is not a stop word follows.
const AMBIGUOUS_GIVEN_NAMES: &[&str] = &["april", "august", "june", "may", "will"];

/// The cue tables and patterns, compiled once in `Detector::new`.
pub(crate) struct PersonRules {
    english_cue: Regex,
    chinese_cue: Regex,
    stop_words: HashSet<&'static str>,
}

impl PersonRules {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        // The cue is case-insensitive, the name is not: a name is 1–3
        // capitalised words. `(?-u:\b)` is the ASCII word boundary, which
        // fires between a Han character and a Latin letter.
        let english_cue = Regex::new(
            r"(?-u:\b)((?i:my name is|my name's|name is|i'm|i’m|i am|this is|it's|dear|hi|hello|hey|regards,?|thanks,?|cheers,?|best,?|sincerely,?|contact person:?|contact:|name:|signed:?|mr\.?|mrs\.?|ms\.?|miss|dr\.?|prof\.?|ask for|speak to|speak with|talk to|cc:?|from:)(?:[ \t]+\n?|\n)[ \t]*(?i:(?:mr|mrs|ms|miss|dr|prof)\.?[ \t]+)?)(\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)?(?:[ \t]\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)?){0,2})",
        )?;
        let chinese_cue = Regex::new(
            r"(?:我是|我叫|我姓|本人|联系人|姓名|经办人|负责人|收件人|收货人|尊敬的|致)[:：]?[ \t]*",
        )?;
        Ok(Self {
            english_cue,
            chinese_cue,
            stop_words: ENGLISH_STOP_WORDS.iter().copied().collect(),
        })
    }

    fn is_stop_word(&self, word: &str) -> bool {
        // Words are short; a stack buffer avoids an allocation per lookup.
        let mut buffer = [0u8; 24];
        let Some(slot) = buffer.get_mut(..word.len()) else {
            return false;
        };
        slot.copy_from_slice(word.as_bytes());
        slot.make_ascii_lowercase();
        let trimmed = match slot.iter().position(|&byte| byte == b'\'') {
            Some(apostrophe) => slot.get(..apostrophe).unwrap_or(slot),
            None => slot,
        };
        std::str::from_utf8(trimmed).is_ok_and(|lower| self.stop_words.contains(lower))
    }

    fn is_ambiguous_given_name(&self, word: &str) -> bool {
        AMBIGUOUS_GIVEN_NAMES.iter().any(|name| word.eq_ignore_ascii_case(name))
    }

    /// Names introduced by an English cue.
    pub(crate) fn english(&self, text: &str, out: &mut Vec<Candidate>) {
        // The search resumes right after the kept name, not after the
        // whole match: in "Kevin Fowler Contact: Zachary Patterson" the
        // match swallows "Contact", which is itself the next cue.
        let mut position = 0;
        while let Some(captures) = self.english_cue.captures_at(text, position) {
            let (Some(whole), Some(cue), Some(name)) =
                (captures.get(0), captures.get(1), captures.get(2))
            else {
                break;
            };
            // Keep the words up to the first stop word: "John Smith Here".
            let mut end = name.start();
            let mut words = name.as_str().split([' ', '\t']).peekable();
            while let Some(word) = words.next() {
                let first = end == name.start();
                let stops = word.is_empty()
                    || (self.is_stop_word(word)
                        && !(first
                            && self.is_ambiguous_given_name(word)
                            && words
                                .peek()
                                .is_some_and(|next| !next.is_empty() && !self.is_stop_word(next))));
                if stops {
                    break;
                }
                end = if first { end + word.len() } else { end + 1 + word.len() };
            }
            position = if end > name.start() { end } else { whole.end() };
            if end == name.start() {
                continue;
            }
            let cue_text = cue.as_str().trim().to_ascii_lowercase();
            if (cue_text == "this is" || cue_text == "it's") && !followed_by_introduction(text, end)
            {
                continue;
            }
            out.push(Candidate {
                start: name.start(),
                end,
                entity_type: EntityType::Person,
                score: CUE_SCORE,
            });
        }
    }

    /// Names introduced by a Chinese cue: a common surname followed by one
    /// or two given-name characters.
    pub(crate) fn chinese(&self, text: &str, out: &mut Vec<Candidate>) {
        for cue in self.chinese_cue.find_iter(text) {
            let Some(rest) = text.get(cue.end()..) else {
                continue;
            };
            let surname_length =
                if COMPOUND_SURNAMES.iter().any(|surname| rest.starts_with(surname)) {
                    rest.chars().take(2).map(char::len_utf8).sum()
                } else if rest.chars().next().is_some_and(is_single_surname) {
                    rest.chars().next().map_or(0, char::len_utf8)
                } else {
                    continue;
                };
            let after_surname = rest.get(surname_length..).unwrap_or_default();
            let given_chars: Vec<char> = after_surname
                .chars()
                .take_while(|&character| {
                    is_han(character) && !CHINESE_NAME_STOPS.contains(character)
                })
                .take(2)
                .collect();
            let mut given: usize = given_chars.iter().copied().map(char::len_utf8).sum();
            // A stop character is the name's last one when the sentence
            // breaks right after it: "我叫李想，" is Li Xiang, while in
            // "我叫李想咨询" the name is unclear and left alone.
            let mut tail = after_surname.get(given..).unwrap_or_default().chars();
            if given_chars.len() < 2
                && let Some(stop) = tail.next()
                && CHINESE_NAME_STOPS.contains(stop)
                && !CHINESE_TITLES.contains(stop)
                && !tail.next().is_some_and(is_han)
            {
                given += stop.len_utf8();
            }
            if given == 0 {
                continue;
            }
            let start = cue.end();
            out.push(Candidate {
                start,
                end: start + surname_length + given,
                entity_type: EntityType::Person,
                score: CUE_SCORE,
            });
        }
    }

    /// Names the CRM already knows. ASCII names match case-insensitively
    /// (ASCII case folding keeps byte offsets intact); other names match
    /// exactly. The words of a multi-word name also match on their
    /// own, since messages often use only the first name.
    pub(crate) fn known<S: AsRef<str>>(&self, text: &str, names: &[S], out: &mut Vec<Candidate>) {
        let mut lowered: Option<String> = None;
        for name in names {
            let name = name.as_ref().trim();
            if name.chars().count() < 2 {
                continue;
            }
            push_name(text, &mut lowered, name, KNOWN_FULL_SCORE, out);
            let words: Vec<&str> = name.split_whitespace().collect();
            if words.len() > 1 {
                for word in words {
                    // Short words and common words ("Will", "May") would
                    // mask ordinary text.
                    if word.chars().count() >= 3 && !self.is_stop_word(word) {
                        push_name(text, &mut lowered, word, KNOWN_PART_SCORE, out);
                    }
                }
            }
        }
    }
}

/// Occurrences of one known name: ASCII case-insensitively, others exactly.
fn push_name(
    text: &str,
    lowered: &mut Option<String>,
    name: &str,
    score: f32,
    out: &mut Vec<Candidate>,
) {
    if name.is_ascii() {
        let haystack = lowered.get_or_insert_with(|| text.to_ascii_lowercase());
        push_occurrences(haystack, &name.to_ascii_lowercase(), score, out);
    } else {
        push_occurrences(text, name, score, out);
    }
}

fn push_occurrences(haystack: &str, needle: &str, score: f32, out: &mut Vec<Candidate>) {
    for (start, matched) in haystack.match_indices(needle) {
        let end = start + matched.len();
        if ascii_word_edges_ok(haystack, start, end) {
            out.push(Candidate { start, end, entity_type: EntityType::Person, score });
        }
    }
}

/// Whether `text[start..end]` is not glued to an ASCII letter or digit on
/// an edge where the span itself is ASCII alphanumeric. Han text around a
/// Chinese name needs no boundary.
pub(crate) fn ascii_word_edges_ok(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let first_alnum = bytes.get(start).is_some_and(u8::is_ascii_alphanumeric);
    let last_alnum =
        end.checked_sub(1).and_then(|last| bytes.get(last)).is_some_and(u8::is_ascii_alphanumeric);
    let before_glued = start
        .checked_sub(1)
        .and_then(|before| bytes.get(before))
        .is_some_and(u8::is_ascii_alphanumeric);
    let after_glued = bytes.get(end).is_some_and(u8::is_ascii_alphanumeric);
    !((first_alnum && before_glued) || (last_alnum && after_glued))
}

/// "This is John from Acme": "this is" only introduces a person when an
/// introduction follows the name.
fn followed_by_introduction(text: &str, end: usize) -> bool {
    let rest = text.get(end..).unwrap_or_default();
    let rest = rest.trim_start_matches([' ', '\t']);
    let lower: String = rest.chars().take(9).collect::<String>().to_ascii_lowercase();
    [",", "from ", "speaking", "here", "with ", "at ", "of ", "("]
        .iter()
        .any(|follow| lower.starts_with(follow))
        || rest.is_empty()
}

fn is_han(character: char) -> bool {
    matches!(character, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
}
