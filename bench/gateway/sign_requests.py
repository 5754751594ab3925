"""Writes N signed deliveries of the seed example as raw HTTP/1.1 requests
for wrk, split into one file per wrk thread (OUT.0, OUT.1, ...), requests
separated by a NUL byte, so that wrk's Lua only splits a string at start-up
and its threads start together.

Usage: sign_requests.py <whsec_secret> <count> <out> [threads] [id_prefix]"""

import base64
import hashlib
import hmac
import json
import sys
import time

secret, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
prefix = sys.argv[5] if len(sys.argv) > 5 else "msg_bench"
key = base64.b64decode(secret.removeprefix("whsec_"))
now = str(int(time.time()))
files = [open(f"{out}.{n}", "wb") for n in range(threads)]
for i in range(count):
    body = json.dumps({"event_type": "interaction", "data": {
        "interaction_id": f"int_{i}", "customer_id": f"cus_{i % 1000}", "channel": "email",
        "content": "我对你们的新服务非常感兴趣!", "sentiment_score": 0.8}}, ensure_ascii=False).encode()
    msg_id = f"{prefix}_{now}_{i}"
    mac = hmac.new(key, f"{msg_id}.{now}.".encode() + body, hashlib.sha256).digest()
    head = (
        "POST /crm/webhooks/interaction HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"webhook-id: {msg_id}\r\n"
        f"webhook-timestamp: {now}\r\n"
        f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n"
        "\r\n"
    ).encode()
    files[i % threads].write(head + body + b"\0")
for file in files:
    file.close()
