//! The optimistic-concurrency contract.
//!
//! A stream's revision is the global position of its last event (0 = the stream has
//! no event). The embedded log and JetStream (`Nats-Expected-Last-Subject-Sequence`,
//! where the position is the stream sequence) give it the same meaning, so the same
//! code runs against either.

use std::fmt;

/// What the writer believes the stream's revision to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedRevision {
    /// No check: append whatever the stream holds.
    Any,
    /// The stream must have no event yet.
    NoStream,
    /// The stream's last event must be at this global position.
    Exact(u64),
}

impl ExpectedRevision {
    /// The expectation that matches a stream whose last event is at `revision`
    /// (0 = none).
    pub fn from_revision(revision: u64) -> Self {
        if revision == 0 { Self::NoStream } else { Self::Exact(revision) }
    }

    /// Whether a stream currently at `actual` (0 = none) satisfies the expectation.
    pub fn is_satisfied_by(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(expected) => expected == actual,
        }
    }

    /// The value of `Nats-Expected-Last-Subject-Sequence`, or `None` for no check.
    pub fn as_last_subject_sequence(self) -> Option<u64> {
        match self {
            Self::Any => None,
            Self::NoStream => Some(0),
            Self::Exact(position) => Some(position),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => write!(f, "any"),
            Self::NoStream => write!(f, "no stream"),
            Self::Exact(position) => write!(f, "{position}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_no_stream() {
        assert_eq!(ExpectedRevision::from_revision(0), ExpectedRevision::NoStream);
        assert!(ExpectedRevision::NoStream.is_satisfied_by(0));
        assert!(!ExpectedRevision::NoStream.is_satisfied_by(3));
        assert!(ExpectedRevision::Exact(3).is_satisfied_by(3));
        assert!(!ExpectedRevision::Exact(3).is_satisfied_by(4));
        assert!(ExpectedRevision::Any.is_satisfied_by(9));
        assert_eq!(ExpectedRevision::NoStream.as_last_subject_sequence(), Some(0));
        assert_eq!(ExpectedRevision::Any.as_last_subject_sequence(), None);
    }
}
