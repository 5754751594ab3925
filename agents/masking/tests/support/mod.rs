//! Strategies shared by the masking property tests.

use proptest::prelude::*;

/// Personal data in the formats the detector finds: e-mails, Chinese and US
/// phones, a card, IBANs in both cases, a Chinese ID and an SSN.
pub(crate) fn pii_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,6})?@[a-z]{2,8}\\.(com|cn|co\\.uk)",
        "1[3-9][0-9]{9}",
        "\\+86 1[3-9][0-9] [0-9]{4} [0-9]{4}",
        "\\([2-8][0-8][0-9]\\) [2-9][0-9]{2}-[0-9]{4}",
        Just("4111 1111 1111 1111".to_owned()),
        Just("DE89 3704 0044 0532 0130 00".to_owned()),
        Just("gb82west12345698765432".to_owned()),
        Just("11010519491231002X".to_owned()),
        Just("123-45-6789".to_owned()),
    ]
}
