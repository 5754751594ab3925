//! Verification of the hash chain.

use crate::log::StoreError;
use crate::record::GENESIS_HASH;
use crate::sled_log::SledEventLog;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record chains to the one before, and the head matches.
    Intact { records: u64, head: u64, head_hash: String },
    /// The first position where the chain breaks, and why.
    Broken { position: u64, reason: String },
}

/// Walks the whole log from the first record: recomputes each record's hash,
/// checks it links to the previous one, that positions increase, that the
/// envelope decodes, and that the last record is the recorded head.
pub fn verify(log: &SledEventLog) -> Result<Verdict, StoreError> {
    let mut previous_hash = GENESIS_HASH;
    let mut previous_position = 0;
    let mut records = 0;
    for entry in log.raw_records(0) {
        let (key_position, record) = match entry {
            Ok(found) => found,
            Err(StoreError::Corrupt { position, reason }) => {
                let position = if position == 0 { previous_position + 1 } else { position };
                return Ok(Verdict::Broken { position, reason });
            }
            Err(other) => return Err(other),
        };
        let broken = |reason: String| Ok(Verdict::Broken { position: key_position, reason });
        if record.position != key_position {
            return broken(format!("record claims position {}", record.position));
        }
        if key_position <= previous_position {
            return broken("positions do not increase".into());
        }
        if record.prev_hash != previous_hash {
            return broken(
                "does not link to the previous record (removed, inserted or reordered)".into(),
            );
        }
        let hash = record.computed_hash();
        if record.hash != hash {
            return broken("content does not match its hash (edited)".into());
        }
        if let Err(error) = record.to_event() {
            return broken(error.to_string());
        }
        previous_hash = hash;
        previous_position = key_position;
        records += 1;
    }
    let (head, head_hash) = log.recorded_head()?;
    if head != previous_position || head_hash != previous_hash {
        return Ok(Verdict::Broken {
            position: head.max(previous_position),
            reason: format!(
                "the recorded head is {head} but the chain ends at {previous_position} (records removed)"
            ),
        });
    }
    Ok(Verdict::Intact { records, head, head_hash: hex::encode(previous_hash) })
}
