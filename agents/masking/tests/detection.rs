//! Given an input, the masked output: one `check` per behaviour, English
//! and Chinese, PII and the look-alikes that must stay untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use masking::{CustomPattern, Detector, DetectorConfig, TokenTable, mask, restore};

fn detector() -> Detector {
    let config = DetectorConfig {
        custom_patterns: vec![CustomPattern {
            name: "EMPLOYEE_ID".to_owned(),
            pattern: r"\bEMP-[0-9]{6}\b".to_owned(),
            score: None,
        }],
    };
    Detector::new(&config).unwrap()
}

fn check_with_names(input: &str, names: &[&str], expected: &str) {
    let detector = detector();
    let mut table = TokenTable::new();
    let masked = mask(&detector, input, names, &mut table);
    assert_eq!(masked.text, expected, "input: {input}");
    assert_eq!(restore(&masked.text, &table), input, "restore of: {input}");
}

fn check(input: &str, expected: &str) {
    check_with_names(input, &[], expected);
}

/// Look-alikes: the text must come out unchanged.
fn untouched(input: &str) {
    check(input, input);
}

#[test]
fn emails() {
    check("我的邮箱是zhang.wei@example.com", "我的邮箱是<EMAIL_1>");
    check("Mail me: john.smith+crm@acme-corp.co.uk.", "Mail me: <EMAIL_1>.");
    check("邮箱：li_na@163.com，谢谢", "邮箱：<EMAIL_1>，谢谢");
}

#[test]
fn chinese_mobiles() {
    check("手机号13812345678", "手机号<PHONE_1>");
    check("请回电138-1234-5678谢谢", "请回电<PHONE_1>谢谢");
    check("我的手机是 138 1234 5678。", "我的手机是 <PHONE_1>。");
    check("+86 138 1234 5678", "<PHONE_1>");
    check("联系我：+8613812345678", "联系我：<PHONE_1>");
}

#[test]
fn chinese_landlines() {
    check("座机010-12345678转分机", "座机<PHONE_1>转分机");
    check("深圳办公室 0755-2345678", "深圳办公室 <PHONE_1>");
    check("电话(010)62345678", "电话<PHONE_1>");
}

#[test]
fn national_and_international_phones() {
    check("Call me at (415) 555-0123 tomorrow", "Call me at <PHONE_1> tomorrow");
    check("Office: 415-555-0123.", "Office: <PHONE_1>.");
    check("UK office +44 20 7946 0958", "UK office <PHONE_1>");
    check("London 020 7946 0958 please", "London <PHONE_1> please");
    check("Tel. +44 (0)20 7946 0958", "Tel. <PHONE_1>");
    check("Berlin: +49 30 12345678", "Berlin: <PHONE_1>");
    check("Paris 01 42 68 53 00", "Paris <PHONE_1>");
    check("call me at 4155550123", "call me at <PHONE_1>");
    check("phone 0033 1 42 68 53 00", "phone <PHONE_1>");
}

#[test]
fn credit_cards() {
    check("Card 4111 1111 1111 1111 exp 12/26", "Card <CREDIT_CARD_1> exp 12/26");
    check("卡号4111-1111-1111-1111", "卡号<CREDIT_CARD_1>");
    check("mc 2221000000000009 ok", "mc <CREDIT_CARD_1> ok");
    check("amex 3782 822463 10005", "amex <CREDIT_CARD_1>");
    check("银行卡6222021234567890128", "银行卡<CREDIT_CARD_1>");
    // A card right after a detected phone number is still a card.
    check("13800000000 4111 1111 1111 1111", "<PHONE_1> <CREDIT_CARD_1>");
    check("+86 130 0000 0000 4111 1111 1111 1111", "<PHONE_1> <CREDIT_CARD_1>");
}

#[test]
fn iban_ssn_cn_id_ip() {
    check("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "IBAN <IBAN_1> BIC COBADEFFXXX");
    check("iban:GB82WEST12345698765432", "iban:<IBAN_1>");
    // Typed in lower case; still one account, and the words after it stay.
    check("my iban is de89 3704 0044 0532 0130 00 thanks", "my iban is <IBAN_1> thanks");
    check("退款到gb82west12345698765432谢谢", "退款到<IBAN_1>谢谢");
    // The same shape with a wrong check digit is left alone.
    check("ref de89 3704 0044 0532 0130 01 thanks", "ref de89 3704 0044 0532 0130 01 thanks");
    check("SSN 123-45-6789", "SSN <US_SSN_1>");
    check("my ssn is 123456789", "my ssn is <US_SSN_1>");
    check("身份证号11010519491231002X", "身份证号<CN_ID_1>");
    check("server 192.168.1.10 is down", "server <IP_ADDRESS_1> is down");
    check("IPv6 2001:db8::8a2e:370:7334 blocked", "IPv6 <IP_ADDRESS_1> blocked");
}

#[test]
fn people() {
    check("Hi, my name is John Smith and I need help", "Hi, my name is <PERSON_1> and I need help");
    check("I'm Sarah, the new buyer", "I'm <PERSON_1>, the new buyer");
    check("This is Mark Lee from Acme", "This is <PERSON_1> from Acme");
    check("我是王伟，想咨询一下", "我是<PERSON_1>，想咨询一下");
    check("我叫欧阳娜娜", "我叫<PERSON_1>");
    check("联系人：张三丰 电话13812345678", "联系人：<PERSON_1> 电话<PHONE_1>");
    check("Dear Mr. Johnson,\nthanks", "Dear Mr. <PERSON_1>,\nthanks");
    check("Best regards,\nEmily Clark", "Best regards,\n<PERSON_1>");
    check("I'm Anna. Anna will call back", "I'm <PERSON_1>. <PERSON_1> will call back");
    check_with_names("thanks laura, see you", &["Laura Gonzalez"], "thanks <PERSON_1>, see you");
    check_with_names(
        "Laura Gonzalez called; Laura wants a demo",
        &["Laura Gonzalez"],
        "<PERSON_1> called; <PERSON_2> wants a demo",
    );
    check_with_names("徐凤兰说明天到", &["徐凤兰"], "<PERSON_1>说明天到");
    // A given name that is also a common word, when the sentence breaks after it.
    check("我叫李想，电话找我", "我叫<PERSON_1>，电话找我");
    check("收件人王想", "收件人<PERSON_1>");
    check("I'm June Armstrong, ticket open", "I'm <PERSON_1>, ticket open");
    check("This is April Bailey from Knapp", "This is <PERSON_1> from Knapp");
}

#[test]
fn common_words_after_cues_are_not_names() {
    untouched("I'm interested in the Pro plan");
    untouched("I'm Happy with the service");
    untouched("this is urgent, please call back");
    untouched("This is Urgent");
    untouched("Hi Team, the report is attached");
    untouched("我是新客户，想了解价格");
    untouched("我是李总，想了解价格");
    untouched("This is April 3rd already");
    untouched("Hi May I ask about the invoice");
}

#[test]
fn custom_patterns() {
    check("Badge EMP-004211 lost", "Badge <EMPLOYEE_ID_1> lost");
}

#[test]
fn decoys_stay_untouched() {
    untouched("Order #123456789 shipped on 2024-05-12 at 14:30");
    untouched("Invoice INV-2024-0001 total $1,299.00 for 3 seats");
    untouched("工单号 20240512001 已处理");
    untouched("ticket 20240512001 closed");
    untouched("created_at 1715500000");
    untouched("Your code is 482913");
    untouched("card 4111 1111 1111 1112 was declined");
    untouched("number 110105194912310021 is wrong");
    untouched("Upgrade to v2.3.1 or version 10.0.19041.1");
    untouched("Ship to 94103 / SW1A 1AA / 100080");
    untouched("Tracking 1Z999AA10123456784 and 9400 1000 0000 0000 0000 00");
    untouched("会议定在2024年5月12日下午3点，价格¥12,800");
    untouched("Meeting 10:30-11:45, room 4B");
    untouched("参考号 5512345678");
    // "Ph" in a name is no phone cue; a reference named after a cue wins.
    untouched("Phillip: ticket 7515303512 still open");
    untouched("call me about 工单号 7515303512");
}

#[test]
fn tokens_are_stable_within_and_across_messages() {
    let detector = detector();
    let mut table = TokenTable::new();
    let first =
        mask(&detector, "a@example.com, b@example.com, a@example.com", &[] as &[&str], &mut table);
    assert_eq!(first.text, "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>");
    let second =
        mask(&detector, "reply to b@example.com or 13812345678", &[] as &[&str], &mut table);
    assert_eq!(second.text, "reply to <EMAIL_2> or <PHONE_1>");
}

#[test]
fn typed_tokens_stay_reversible() {
    let detector = detector();
    let mut table = TokenTable::new();
    let input = "I typed <EMAIL_1> and a@example.com and <PHONE_13812345678>";
    let masked = mask(&detector, input, &[] as &[&str], &mut table);
    assert_eq!(masked.text, "I typed <LITERAL_1> and <EMAIL_1> and <LITERAL_2>");
    assert_eq!(restore(&masked.text, &table), input);
}

#[test]
fn restore_leaves_unknown_tokens() {
    let detector = detector();
    let mut table = TokenTable::new();
    let masked = mask(&detector, "mail a@example.com", &[] as &[&str], &mut table);
    let answer = format!("We wrote to {} and <PHONE_9>.", masked.text.trim_start_matches("mail "));
    assert_eq!(restore(&answer, &table), "We wrote to a@example.com and <PHONE_9>.");
}

#[test]
fn bad_custom_names_are_rejected() {
    for name in ["EMAIL", "lower", "LITERAL", "9X", ""] {
        let config = DetectorConfig {
            custom_patterns: vec![CustomPattern {
                name: name.to_owned(),
                pattern: "x".to_owned(),
                score: None,
            }],
        };
        assert!(Detector::new(&config).is_err(), "{name}");
    }
}

#[test]
fn run_context() {
    // A tracking number stays whole; a cue speaks only for the next number.
    untouched("Tracking: 9400 7174 0816 2334 5829 19.");
    check("手机188-7951-9775。工单号 6165960733", "手机<PHONE_1>。工单号 6165960733");
    // A bare national number with a trunk zero.
    check("Best regards,\nAnna\n02079460958", "Best regards,\n<PERSON_1>\n<PHONE_1>");
    check("Freephone (0808) 157 0335 or (0808) 1570335", "Freephone <PHONE_1> or <PHONE_2>");
    check("收件人谷莉，手机132-0821-4443", "收件人<PERSON_1>，手机<PHONE_1>");
    check("我是宋刚，邮箱a@b.cn", "我是<PERSON_1>，邮箱<EMAIL_1>");
    check_with_names(
        "Contact: Danielle Bell, see you",
        &["Thomas Bell"],
        "Contact: <PERSON_1>, see you",
    );
    check_with_names("谢谢 Horst-Günter!", &["Horst-Günter Carsten"], "谢谢 <PERSON_1>!");
}

#[test]
fn sentence_and_date_context() {
    untouched("会议改到08/01/2025 12:48 am，请准时参加。");
    check(
        "John prefers email over phone. Ticket 8827953019 reopened",
        "John prefers email over phone. Ticket 8827953019 reopened",
    );
    check(
        "Thanks,\nKevin Fowler Contact: Zachary Patterson, mobile",
        "Thanks,\n<PERSON_1> Contact: <PERSON_2>, mobile",
    );
    check("Customer (+1 274 578 5906)", "Customer (<PHONE_1>)");
    check("Büro 030/1234567", "Büro <PHONE_1>");
}
