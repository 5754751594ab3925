"""Sends webhooks signed by the official `standardwebhooks` library to an
AgentCRM gateway and checks its answers.

Usage: standardwebhooks_client.py <base-url> <whsec_ secret>
Exits non-zero and says why on the first unexpected answer.
"""

import datetime
import json
import sys
import urllib.error
import urllib.request

from standardwebhooks.webhooks import Webhook

SEED_EXAMPLE = {
    "event_type": "interaction",
    "data": {
        "interaction_id": "int_001",
        "customer_id": "cus_12345",
        "channel": "email",
        "content": "我对你们的新服务非常感兴趣!",
        "sentiment_score": 0.8,
    },
}


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def signed_headers(secret, msg_id, timestamp, payload):
    signature = Webhook(secret).sign(msg_id, timestamp, payload)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def expect(name, got, wanted):
    if got != wanted:
        sys.exit(f"{name}: expected {wanted}, got {got}")
    print(f"ok: {name} -> {got}")


def main():
    base, secret = sys.argv[1], sys.argv[2]
    url = base + "/crm/webhooks/interaction"
    payload = json.dumps(SEED_EXAMPLE, ensure_ascii=False)
    now = datetime.datetime.now(tz=datetime.timezone.utc)

    status, first = post(url, payload.encode(), signed_headers(secret, "msg_py_1", now, payload))
    expect("signed seed example", status, 202)
    expect("status field", first["status"], "received")

    status, again = post(url, payload.encode(), signed_headers(secret, "msg_py_1", now, payload))
    expect("retry with the same webhook-id", status, 202)
    expect("retry's event_id", again["event_id"], first["event_id"])

    headers = signed_headers(secret, "msg_py_2", now, payload)
    tampered = payload.replace("0.8", "0.9").encode()
    expect("tampered body", post(url, tampered, headers)[0], 401)

    other = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    headers = signed_headers(secret, "msg_py_3", now, payload)
    headers["webhook-signature"] = other.sign("msg_py_3", now, payload)
    expect("wrong secret", post(url, payload.encode(), headers)[0], 401)

    stale = now - datetime.timedelta(minutes=10)
    headers = signed_headers(secret, "msg_py_4", stale, payload)
    expect("stale timestamp", post(url, payload.encode(), headers)[0], 401)

    # Verification in the other direction: the library accepts what the
    # gateway's own signer would produce for the same delivery.
    Webhook(secret).verify(payload, signed_headers(secret, "msg_py_5", now, payload))
    print("all checks passed")


if __name__ == "__main__":
    main()
