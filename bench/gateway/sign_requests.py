"""Writes N signed deliveries of the seed example (one per line: id, timestamp,
signature, body) for wrk. Usage: sign_requests.py <whsec_secret> <count> <out>"""

import base64
import hashlib
import hmac
import json
import sys
import time

secret, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
key = base64.b64decode(secret.removeprefix("whsec_"))
now = str(int(time.time()))
with open(out, "w", encoding="utf-8") as file:
    for i in range(count):
        body = json.dumps({"event_type": "interaction", "data": {
            "interaction_id": f"int_{i}", "customer_id": f"cus_{i % 1000}", "channel": "email",
            "content": "我对你们的新服务非常感兴趣!", "sentiment_score": 0.8}}, ensure_ascii=False)
        msg_id = f"msg_bench_{now}_{i}"
        mac = hmac.new(key, f"{msg_id}.{now}.{body}".encode(), hashlib.sha256).digest()
        file.write(f"{msg_id}\t{now}\tv1,{base64.b64encode(mac).decode()}\t{body}\n")
