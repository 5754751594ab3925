"""Build a labelled benchmark of CRM messages in English, Chinese and both.

Every message carries gold spans (code-point offsets into the text, and
the entity type) and decoy spans: look-alikes such as dates, order
numbers or Luhn-failing card numbers that must stay unmasked. Card
numbers, IBANs, Chinese IDs and SSNs are valid (check digits computed
here); phone numbers are drawn from Faker and kept only when
libphonenumber (`phonenumbers`) calls them valid. Fixed seeds make the
file identical on every run.

Usage: python generate.py OUT.jsonl [--count N]
"""

import argparse
import json
import random

import phonenumbers
from faker import Faker

SEED = 20240512
rng = random.Random(SEED)
FAKERS = {}
for locale in ["en_US", "en_GB", "de_DE", "fr_FR", "zh_CN"]:
    fake = Faker(locale)
    fake.seed_instance(SEED)
    FAKERS[locale] = fake
EN, GB, DE, FR, ZH = (FAKERS[k] for k in ["en_US", "en_GB", "de_DE", "fr_FR", "zh_CN"])


# ---------------------------------------------------------------- values

def luhn_check_digit(body):
    total = 0
    for position, digit in enumerate(reversed(body)):
        value = int(digit)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def card_digits(valid=True):
    prefix, length = rng.choice([
        ("4", 16), ("4", 16), ("51", 16), ("55", 16), (str(rng.randint(2221, 2720)), 16),
        ("34", 15), ("37", 15), ("6011", 16), ("65", 16), (str(rng.randint(3528, 3589)), 16),
        ("62", 16), ("62", 19),
    ])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    check = luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def format_card(digits):
    style = rng.choice(["plain", "space", "space", "dash"])
    if style == "plain":
        return digits
    separator = " " if style == "space" else "-"
    if len(digits) == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i:i + 4] for i in range(0, 16, 4)]
        if len(digits) > 16:
            groups.append(digits[16:])
    return separator.join(groups)


def iban():
    fake = rng.choice([DE, GB, FR, EN])
    value = fake.iban()
    if rng.random() < 0.5:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    # Typed on a phone or copied from a lowercase form field.
    if rng.random() < 0.1:
        value = value.lower()
    return value


CN_REGIONS = ["110105", "110108", "310115", "440305", "440106", "330106", "510107", "320102", "420111", "610113"]
CN_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def cn_id(valid=True):
    region = rng.choice(CN_REGIONS)
    birth = ZH.date_of_birth(minimum_age=18, maximum_age=80).strftime("%Y%m%d")
    body = region + birth + "".join(rng.choice("0123456789") for _ in range(3))
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, CN_WEIGHTS)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def ssn():
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def valid_phone(fake, region):
    for _ in range(200):
        raw = fake.phone_number()
        if "x" in raw or "ext" in raw.lower():
            continue
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return raw
    raise RuntimeError(f"no valid phone for {region}")


def us_phone():
    while True:
        area = f"{rng.randint(2, 9)}{rng.randint(0, 8)}{rng.randint(0, 9)}"
        exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
        line = f"{rng.randint(0, 9999):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(area + exchange + line, "US")):
            break
    return rng.choice([
        f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"{area}.{exchange}.{line}",
        f"+1 {area}-{exchange}-{line}", f"+1 ({area}) {exchange}-{line}", f"+1 {area} {exchange} {line}",
    ])


def cn_mobile():
    while True:
        digits = ZH.phone_number()
        if phonenumbers.is_valid_number(phonenumbers.parse(digits, "CN")):
            break
    return rng.choice([
        digits, digits, f"{digits[:3]}-{digits[3:7]}-{digits[7:]}", f"{digits[:3]} {digits[3:7]} {digits[7:]}",
        f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}", f"+86-{digits}", f"+86{digits}",
    ])


def cn_landline():
    while True:
        area = rng.choice(["010", "021", "020", "022", "0755", "0571", "0512", "0531", "0871"])
        local_length = 8 if len(area) == 3 else rng.choice([7, 8])
        local = str(rng.randint(2, 8)) + "".join(rng.choice("0123456789") for _ in range(local_length - 1))
        if phonenumbers.is_valid_number(phonenumbers.parse(area + local, "CN")):
            break
    return rng.choice([f"{area}-{local}", f"{area}-{local}", f"({area}){local}", f"{area} {local}"])


def phone(lang):
    if lang == "zh":
        return rng.choice([cn_mobile, cn_mobile, cn_mobile, cn_landline])()
    kind = rng.choice(["us", "us", "us", "gb", "de", "fr", "cn"])
    if kind == "us":
        return us_phone()
    if kind == "cn":
        return cn_mobile()
    return valid_phone({"gb": GB, "de": DE, "fr": FR}[kind], kind.upper())


def ip():
    roll = rng.random()
    if roll < 0.4:
        return EN.ipv4_public()
    if roll < 0.75:
        return EN.ipv4_private()
    return EN.ipv6()


def email(lang):
    fake = ZH if lang == "zh" else rng.choice([EN, GB, DE])
    if rng.random() < 0.5:
        return fake.email()
    first = fake.first_name().lower() if lang != "zh" else EN.first_name().lower()
    domain = rng.choice(["gmail.com", "outlook.com", "163.com", "qq.com", "acme-corp.com", "example.org", "sina.cn"])
    return f"{first}{rng.choice(['.', '_', ''])}{EN.last_name().lower()}{rng.choice(['', str(rng.randint(1, 99))])}@{domain}"


def en_name():
    fake = rng.choice([EN, EN, GB, DE, FR])
    return f"{fake.first_name()} {fake.last_name()}"


def zh_name():
    return ZH.name()


# ---------------------------------------------------------------- decoys

def decoy(kind):
    if kind == "date":
        d = EN.date_between(start_date="-2y", end_date="+1y")
        return rng.choice([d.strftime("%Y-%m-%d"), d.strftime("%d/%m/%Y"), d.strftime("%B %d, %Y"),
                           f"{d.year}年{d.month}月{d.day}日", d.strftime("%Y.%m.%d")])
    if kind == "time":
        return rng.choice([f"{rng.randint(0, 23):02d}:{rng.choice(['00', '15', '30', '45'])}",
                           f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                           f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(['am', 'pm'])}"])
    if kind == "price":
        return rng.choice([f"${rng.randint(1, 99):,}{rng.choice(['', ',' + str(rng.randint(100, 999))])}.{rng.randint(0, 99):02d}",
                           f"¥{rng.randint(100, 99999):,}", f"€{rng.randint(5, 5000)}.{rng.randint(0, 99):02d}",
                           f"{rng.randint(100, 99999)}元"])
    if kind == "quantity":
        return rng.choice([f"{rng.randint(2, 500)} seats", f"{rng.randint(2, 5000)} units", f"{rng.randint(2, 200)}台",
                           f"{rng.randint(1, 50)} kg"])
    if kind == "order":
        return rng.choice([f"#{rng.randint(10**8, 10**10 - 1)}", f"SO-{rng.randint(10**5, 10**7)}",
                           f"PO{rng.randint(10**7, 10**9)}", f"{rng.randint(2023, 2025)}{rng.randint(10**9, 10**10 - 1)}"])
    if kind == "invoice":
        return f"INV-{rng.randint(2022, 2025)}-{rng.randint(1, 9999):04d}"
    if kind == "ticket":
        return rng.choice([f"{rng.randint(2023, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(1, 999):03d}",
                           f"{rng.randint(2023, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(1, 99):02d}",
                           str(rng.randint(5 * 10**9, 9 * 10**9))])
    if kind == "tracking":
        return rng.choice([
            "1Z" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(16)),
            "9400 " + " ".join(f"{rng.randint(0, 9999):04d}" for _ in range(4)) + f" {rng.randint(0, 99):02d}",
            "SF" + "".join(rng.choice("0123456789") for _ in range(12)),
            "".join(rng.choice("0123456789") for _ in range(12)),
        ])
    if kind == "version":
        return rng.choice([f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}",
                           f"{rng.randint(1, 15)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
                           f"{rng.randint(1, 5)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}-beta"])
    if kind == "postcode":
        return rng.choice([EN.postcode(), GB.postcode(), DE.postcode(), ZH.postcode(), FR.postcode()])
    if kind == "timestamp":
        return str(rng.randint(1_600_000_000, 1_760_000_000))
    if kind == "otp":
        return f"{rng.randint(0, 999999):06d}"
    if kind == "bad_card":
        return format_card(card_digits(valid=False))
    if kind == "bad_cn_id":
        return cn_id(valid=False)
    raise ValueError(kind)


# ---------------------------------------------------------------- templates
#
# Placeholders: {EMAIL} {PHONE} {CARD} {IBAN} {SSN} {CNID} {IP} are PII;
# {NAME} is a person introduced in the text (not known to the CRM);
# {KNOWN} / {KNOWN_FIRST} / {KNOWN_LAST} are the customer's name, which the
# CRM passes in `known_names`; {D:kind} is a decoy.

EN_TEMPLATES = [
    "Hi, my name is {NAME} and I'd like a quote for {D:quantity}. You can reach me at {EMAIL}.",
    "Please call me at {PHONE} after {D:time}, I'm in meetings until then.",
    "Hi {KNOWN_FIRST}, thanks for the call today. I sent the contract to {EMAIL}.",
    "Dear Mr. {KNOWN_LAST},\nyour order {D:order} shipped on {D:date}. Tracking: {D:tracking}.",
    "Dear Ms. {KNOWN_LAST}, invoice {D:invoice} for {D:price} is attached.",
    "Card {CARD} was charged {D:price} for {D:quantity}.",
    "The payment with card {D:bad_card} was declined, can you retry with {CARD}?",
    "Refund to IBAN {IBAN} please, reference {D:invoice}.",
    "SSN {SSN} for the background check, DOB {D:date}.",
    "This is {NAME} from {COMPANY}, following up on ticket {D:ticket}.",
    "I'm {NAME}, the new procurement lead. My direct line is {PHONE}.",
    "Login from IP {IP} at {D:time} was blocked by the firewall.",
    "We upgraded to {D:version} and the sync with {IP} stopped working.",
    "{KNOWN} called about the renewal, wants {D:quantity} at {D:price}.",
    "Note: {KNOWN} prefers email ({EMAIL}) over phone.",
    "Customer {KNOWN} ({EMAIL}, {PHONE}) asked for a demo on {D:date}.",
    "Your verification code is {D:otp}. Do not share it with anyone.",
    "Ship to {D:postcode}, attention {KNOWN}. Order {D:order}.",
    "Event logged at unix time {D:timestamp} for session {D:ticket}.",
    "Best regards,\n{NAME}\n{PHONE}",
    "Thanks,\n{KNOWN}",
    "I'm interested in the enterprise plan, can you send pricing to {EMAIL}?",
    "This is urgent: the export for {D:date} failed twice.",
    "I'm happy with the service so far. Invoice {D:invoice} is paid.",
    "Hi Team, the meeting moved to {D:time} on {D:date}.",
    "Contact: {NAME}, mobile {PHONE}, mail {EMAIL}.",
    "My SSN is {SSN} and my card number is {CARD}.",
    "Wire the deposit to {IBAN} before {D:date}.",
    "Server {IP} returned 502 at {D:time}; version {D:version}.",
    "Ticket {D:ticket} reopened by {KNOWN_FIRST}, see order {D:order}.",
    "Card ending in {D:otp} expired, the old number {D:bad_card} no longer works.",
]

ZH_TEMPLATES = [
    "你好，我是{NAME}，手机号{PHONE}，想咨询一下企业版的价格。",
    "我的邮箱是{EMAIL}，请把合同发给我。",
    "我叫{NAME}，身份证号{CNID}，需要开发票。",
    "联系人：{NAME}，电话：{PHONE}",
    "{KNOWN}说合同下周签，订单号{D:order}已经付款{D:price}。",
    "尊敬的{KNOWN}，您的订单将于{D:date}发货，快递单号{D:tracking}。",
    "请回电{PHONE}，谢谢！",
    "银行卡{CARD}扣款失败，请帮忙查一下。",
    "工单号 {D:ticket} 已处理，请确认。",
    "验证码{D:otp}，五分钟内有效。",
    "客户{KNOWN}反馈系统在{D:time}无法登录，IP地址{IP}。",
    "身份证号码{D:bad_cn_id}校验不通过，请重新提供。",
    "收货地址邮编{D:postcode}，收件人{NAME}，手机{PHONE}。",
    "{KNOWN}您好，您购买的{D:quantity}已出库。",
    "请致电{PHONE}联系我们的客服，工作时间{D:time}起。",
    "我是{NAME}，邮箱{EMAIL}，明天上午方便通话。",
    "升级到{D:version}以后报表导出失败，时间戳{D:timestamp}。",
    "会议改到{D:date} {D:time}，请{KNOWN}准时参加。",
    "卡号{D:bad_card}无效，请使用{CARD}。",
    "我是新客户，想了解{D:quantity}的价格。",
    "退款请打到账户{IBAN}，发票号{D:invoice}。",
]

MIXED_TEMPLATES = [
    "Hi，我是{NAME}，my email is {EMAIL}，手机{PHONE}。",
    "{KNOWN}的order {D:order} delayed，please call {PHONE}。",
    "客户说card {CARD} 被拒了，amount {D:price}。",
    "Contact person 联系人：{NAME}，tel {PHONE}",
    "Meeting on {D:date}，联系方式：{EMAIL}",
    "请把invoice {D:invoice}发到{EMAIL}，谢谢 {KNOWN_FIRST}!",
    "IP {IP} 在{D:time}登录失败，ticket {D:ticket}",
    "手机号{PHONE}, ID {CNID}, 请核实。",
    "I'm {NAME}, 工单号 {D:ticket} 还没人处理。",
    "Version {D:version} 的bug，请联系{KNOWN}。",
]


def fill(template, lang):
    known = en_name() if lang == "en" else zh_name() if lang == "zh" else rng.choice([en_name, zh_name])()
    known_used = False
    text = ""
    spans, decoys = [], []
    position = 0
    while position < len(template):
        open_brace = template.find("{", position)
        if open_brace < 0:
            text += template[position:]
            break
        text += template[position:open_brace]
        close = template.index("}", open_brace)
        slot = template[open_brace + 1:close]
        position = close + 1
        entity = None
        if slot.startswith("D:"):
            value = decoy(slot[2:])
            decoys.append({"start": len(text), "end": len(text) + len(value), "kind": slot[2:]})
            text += value
            continue
        if slot == "COMPANY":
            text += EN.company()
            continue
        if slot == "EMAIL":
            value, entity = email(lang), "EMAIL"
        elif slot == "PHONE":
            value, entity = phone(lang), "PHONE"
        elif slot == "CARD":
            value, entity = format_card(card_digits()), "CREDIT_CARD"
        elif slot == "IBAN":
            value, entity = iban(), "IBAN"
        elif slot == "SSN":
            value, entity = ssn(), "US_SSN"
        elif slot == "CNID":
            value, entity = cn_id(), "CN_ID"
        elif slot == "IP":
            value, entity = ip(), "IP_ADDRESS"
        elif slot == "NAME":
            is_zh = lang == "zh" or (lang == "mixed" and any("\u4e00" <= c <= "\u9fff" for c in text[-3:]))
            value, entity = (zh_name() if is_zh else en_name()), "PERSON"
        elif slot in ("KNOWN", "KNOWN_FIRST", "KNOWN_LAST"):
            known_used = True
            parts = known.split(" ")
            value = known if slot == "KNOWN" or len(parts) == 1 else parts[0] if slot == "KNOWN_FIRST" else parts[-1]
            entity = "PERSON"
        else:
            raise ValueError(slot)
        spans.append({"start": len(text), "end": len(text) + len(value), "type": entity})
        text += value
    known_names = [known] if known_used else []
    # The CRM usually also knows other contacts of the same account.
    if rng.random() < 0.5:
        known_names.append(en_name() if lang == "en" else zh_name())
    return text, spans, decoys, known_names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=2400)
    args = parser.parse_args()
    with open(args.out, "w", encoding="utf-8") as out:
        for index in range(args.count):
            roll = rng.random()
            lang, pool = ("en", EN_TEMPLATES) if roll < 0.45 else ("zh", ZH_TEMPLATES) if roll < 0.85 else ("mixed", MIXED_TEMPLATES)
            # One to three sentences per message, as in chats and tickets.
            parts = rng.sample(pool, rng.choice([1, 1, 2, 2, 3]))
            # Chinese sentences follow each other directly; English and
            # mixed ones after a space.
            separator = "" if lang == "zh" else " "
            text, spans, decoys, known_names = "", [], [], []
            for template in parts:
                piece, piece_spans, piece_decoys, names = fill(template, lang)
                offset = len(text) + (len(separator) if text else 0)
                text = text + separator + piece if text else piece
                spans += [{**s, "start": s["start"] + offset, "end": s["end"] + offset} for s in piece_spans]
                decoys += [{**d, "start": d["start"] + offset, "end": d["end"] + offset} for d in piece_decoys]
                known_names += [n for n in names if n not in known_names]
            record = {"id": index, "lang": lang, "text": text, "known_names": known_names, "spans": spans, "decoys": decoys}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
