//! Reversible tokens. Every detected value is replaced by a token such as
//! `<EMAIL_1>`; the per-customer [`TokenTable`] remembers which value a
//! token stands for, so the same value always gets the same token across
//! one customer's messages, and [`restore`] puts the values back.
//!
//! Text that already contains something shaped like a token (a user
//! typing `<EMAIL_1>`) is itself tokenised as a `LITERAL`, so every
//! token-shaped span of a masked text was put there by [`mask`] and
//! `restore(mask(x)) == x` holds for every `x`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::detect::Detector;
use crate::entity::Entity;

/// The type name used for token-shaped text found in the raw input.
pub const LITERAL_TYPE: &str = "LITERAL";

/// One row of a token table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The token, e.g. `<PHONE_2>`.
    pub token: String,
    /// The entity type name the token was minted for.
    pub entity_type: String,
    /// The original value.
    pub value: String,
}

/// A customer's tokens: value ↔ token, numbered per type. Serialises as
/// its list of entries; the vault stores it sealed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "TableEntries", into = "TableEntries")]
pub struct TokenTable {
    entries: Vec<TokenEntry>,
    by_value: HashMap<String, usize>,
    by_token: HashMap<String, usize>,
    counters: HashMap<String, u32>,
}

#[derive(Serialize, Deserialize)]
struct TableEntries {
    entries: Vec<TokenEntry>,
}

impl From<TableEntries> for TokenTable {
    fn from(stored: TableEntries) -> Self {
        let mut table = Self::default();
        for entry in stored.entries {
            table.insert(entry);
        }
        table
    }
}

impl From<TokenTable> for TableEntries {
    fn from(table: TokenTable) -> Self {
        Self { entries: table.entries }
    }
}

impl TokenTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tokens in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, in the order the tokens were minted.
    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    /// The original value behind `token`, if this table minted it.
    pub fn value_of(&self, token: &str) -> Option<&str> {
        let index = *self.by_token.get(token)?;
        self.entries.get(index).map(|entry| entry.value.as_str())
    }

    /// The token already minted for `value`, if any.
    pub fn token_of(&self, value: &str) -> Option<&str> {
        let index = *self.by_value.get(value)?;
        self.entries.get(index).map(|entry| entry.token.as_str())
    }

    /// The token for `value`: the existing one, or a new one numbered
    /// after the type's last. A value keeps its first token even if it is
    /// later detected as another type, so restoring stays unambiguous.
    pub fn token_for(&mut self, entity_type: &str, value: &str) -> &str {
        let index = match self.by_value.get(value) {
            Some(&index) => index,
            None => {
                let counter = self.counters.get(entity_type).copied().unwrap_or(0) + 1;
                self.insert(TokenEntry {
                    token: format!("<{entity_type}_{counter}>"),
                    entity_type: entity_type.to_owned(),
                    value: value.to_owned(),
                })
            }
        };
        self.entries.get(index).map_or("", |entry| entry.token.as_str())
    }

    fn insert(&mut self, entry: TokenEntry) -> usize {
        let index = self.entries.len();
        let counter = token_number(&entry.token).unwrap_or(0);
        let slot = self.counters.entry(entry.entity_type.clone()).or_insert(0);
        *slot = (*slot).max(counter);
        self.by_value.entry(entry.value.clone()).or_insert(index);
        self.by_token.entry(entry.token.clone()).or_insert(index);
        self.entries.push(entry);
        index
    }
}

fn token_number(token: &str) -> Option<u32> {
    let inner = token.strip_prefix('<')?.strip_suffix('>')?;
    let (_, number) = inner.rsplit_once('_')?;
    number.parse().ok()
}

/// Byte spans of every token-shaped piece of `text`: `<`, an upper-case
/// ASCII letter, then `[A-Z0-9_]*`, ending in `_` and digits, then `>`.
/// The body cannot hold `<` or `>`, so spans never overlap and the same
/// spans are found however the text is split around them.
pub fn token_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let bytes = text.as_bytes();
    let mut position = 0;
    std::iter::from_fn(move || {
        while let Some(offset) =
            bytes.get(position..).and_then(|rest| rest.iter().position(|&byte| byte == b'<'))
        {
            let open = position + offset;
            let mut cursor = open + 1;
            if !bytes.get(cursor).is_some_and(u8::is_ascii_uppercase) {
                position = open + 1;
                continue;
            }
            while bytes.get(cursor).is_some_and(|&byte| {
                byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_'
            }) {
                cursor += 1;
            }
            let body = bytes.get(open + 1..cursor).unwrap_or_default();
            let closes = bytes.get(cursor) == Some(&b'>');
            let numbered = body.iter().rposition(|&byte| byte == b'_').is_some_and(|underscore| {
                let number = body.get(underscore + 1..).unwrap_or_default();
                underscore > 0 && !number.is_empty() && number.iter().all(u8::is_ascii_digit)
            });
            if closes && numbered {
                position = cursor + 1;
                return Some((open, cursor + 1));
            }
            position = open + 1;
        }
        None
    })
}

/// The result of masking one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Masked {
    /// The text with every detected value replaced by its token.
    pub text: String,
    /// What was detected, with byte offsets into the original text.
    /// Token-shaped literals are tokenised but not listed: they are not
    /// personal data.
    pub entities: Vec<Entity>,
}

/// Detect personal data in `text`, replace each value by its token from
/// `table` (minting new tokens as needed) and return the masked text.
pub fn mask<S: AsRef<str>>(
    detector: &Detector,
    text: &str,
    known_names: &[S],
    table: &mut TokenTable,
) -> Masked {
    let mut entities = detector.detect(text, known_names);
    let mut literals: Vec<(usize, usize)> =
        if text.contains('<') { token_spans(text).collect() } else { Vec::new() };

    // A detection overlapping a literal is folded into the literal, so
    // the literal's span stays whole and nothing of the value leaks.
    if !literals.is_empty() {
        for literal in &mut literals {
            loop {
                let mut grown = false;
                for entity in &entities {
                    let overlaps = entity.start < literal.1 && literal.0 < entity.end;
                    if overlaps && (entity.start < literal.0 || entity.end > literal.1) {
                        literal.0 = literal.0.min(entity.start);
                        literal.1 = literal.1.max(entity.end);
                        grown = true;
                    }
                }
                if !grown {
                    break;
                }
            }
        }
        // Grown literals may now overlap each other: merge them.
        literals.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(literals.len());
        for (start, end) in literals {
            match merged.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        literals = merged;
        entities.retain(|entity| {
            literals.iter().all(|&(start, end)| entity.end <= start || end <= entity.start)
        });
    }

    let mut spans: Vec<(usize, usize, &str)> = entities
        .iter()
        .map(|entity| (entity.start, entity.end, entity.entity_type.name()))
        .chain(literals.iter().map(|&(start, end)| (start, end, LITERAL_TYPE)))
        .collect();
    spans.sort_unstable_by_key(|span| span.0);

    let mut masked = String::with_capacity(text.len() + 8 * spans.len());
    let mut cursor = 0;
    for (start, end, type_name) in spans {
        let (Some(before), Some(value)) = (text.get(cursor..start), text.get(start..end)) else {
            continue;
        };
        masked.push_str(before);
        masked.push_str(table.token_for(type_name, value));
        cursor = end;
    }
    masked.push_str(text.get(cursor..).unwrap_or_default());
    Masked { text: masked, entities }
}

/// Put the original values back for every token of `table` found in
/// `text` (typically an LLM answer written over masked text). Tokens the
/// table does not know stay as they are.
pub fn restore(text: &str, table: &TokenTable) -> String {
    let mut restored = String::with_capacity(text.len());
    let mut cursor = 0;
    for (start, end) in token_spans(text) {
        let (Some(before), Some(token)) = (text.get(cursor..start), text.get(start..end)) else {
            continue;
        };
        if let Some(value) = table.value_of(token) {
            restored.push_str(before);
            restored.push_str(value);
            cursor = end;
        }
    }
    restored.push_str(text.get(cursor..).unwrap_or_default());
    restored
}
