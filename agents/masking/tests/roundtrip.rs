//! Invariants over arbitrary and generated text: masking then restoring
//! gives back the original byte for byte, the masked text shows none of
//! the detected values, and nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;

use masking::{Detector, DetectorConfig, TokenTable, mask, restore};
use proptest::prelude::*;

mod support;

static DETECTOR: LazyLock<Detector> =
    LazyLock::new(|| Detector::new(&DetectorConfig::default()).unwrap());

fn assert_invariants(text: &str, names: &[String]) -> Result<(), TestCaseError> {
    let mut table = TokenTable::new();
    let masked = mask(&DETECTOR, text, names, &mut table);
    prop_assert_eq!(restore(&masked.text, &table), text);
    for entity in &masked.entities {
        let value = &text[entity.start..entity.end];
        prop_assert!(!masked.text.contains(value), "{value:?} left in {:?}", masked.text);
    }
    Ok(())
}

/// Pieces CRM messages are made of: PII in the formats we detect, the
/// look-alikes, typed tokens, and filler in both languages.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => support::pii_value(),
        1 => "1[3-9][0-9] [0-9]{4} [0-9]{4}",
        1 => "(25[0-5]|1[0-9]{2})\\.[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        1 => "<(EMAIL|PHONE|PERSON|LITERAL|X)_[0-9]{1,2}>",
        1 => "[<>_A-Z0-9]{1,6}",
        1 => "(I'm|my name is|this is|我是|我叫|联系人：) ?",
        1 => "(John Smith|Anna|王伟|欧阳娜娜|张三丰)",
        1 => "(手机号|电话|call me at|Order #|INV-|工单号 |v)",
        1 => "[0-9]{1,20}",
        1 => "[ ,.，。：:\\-]{1,3}",
        1 => "[a-zA-Z]{1,10}",
        1 => "[\\u{4e00}-\\u{9fa5}]{1,6}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_round_trip(text in any::<String>()) {
        assert_invariants(&text, &[])?;
    }

    #[test]
    fn generated_messages_round_trip(
        pieces in prop::collection::vec(piece(), 1..12),
        names in prop::collection::vec("(Laura Gonzalez|王伟|Li|[A-Z][a-z]{2,6})", 0..3),
    ) {
        let text: String = pieces.concat();
        assert_invariants(&text, &names)?;
    }
}
