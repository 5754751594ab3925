//! Invariants over arbitrary and generated text: masking then restoring
//! gives back the original byte for byte, the masked text shows none of
//! the detected values, and nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;

use masking::{Detector, DetectorConfig, TokenTable, mask, restore};
use proptest::prelude::*;

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
        "[a-z]{1,8}(\\.[a-z]{1,6})?@[a-z]{2,8}\\.(com|cn|co\\.uk)",
        "1[3-9][0-9]{9}",
        "1[3-9][0-9] [0-9]{4} [0-9]{4}",
        "\\+86 1[3-9][0-9] [0-9]{4} [0-9]{4}",
        "\\([2-8][0-8][0-9]\\) [2-9][0-9]{2}-[0-9]{4}",
        Just("4111 1111 1111 1111".to_owned()),
        Just("DE89 3704 0044 0532 0130 00".to_owned()),
        Just("gb82west12345698765432".to_owned()),
        Just("11010519491231002X".to_owned()),
        Just("123-45-6789".to_owned()),
        "(25[0-5]|1[0-9]{2})\\.[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        "<(EMAIL|PHONE|PERSON|LITERAL|X)_[0-9]{1,2}>",
        "[<>_A-Z0-9]{1,6}",
        "(I'm|my name is|this is|我是|我叫|联系人：) ?",
        "(John Smith|Anna|王伟|欧阳娜娜|张三丰)",
        "(手机号|电话|call me at|Order #|INV-|工单号 |v)",
        "[0-9]{1,20}",
        "[ ,.，。：:\\-]{1,3}",
        "[a-zA-Z]{1,10}",
        "[\\u{4e00}-\\u{9fa5}]{1,6}",
        any::<String>(),
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
