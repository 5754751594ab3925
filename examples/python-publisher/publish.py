"""Publishes one canonical event (ActivityLogged) to AgentCRM's JetStream
stream CRM_EVENTS, the way `agentcrm publish --nats-url` does, using classes
generated from the .proto files by generate.sh.

Usage: .venv/bin/python publish.py [nats-url] [customer-id]
"""

import asyncio
import sys
import uuid
from datetime import datetime, timezone

sys.path.insert(0, "agentcrm_pb")

import nats  # noqa: E402
from agentcrm.v1 import customer_pb2, envelope_pb2  # noqa: E402


def activity_event(customer_id: str) -> envelope_pb2.Envelope:
    now = datetime.now(tz=timezone.utc)
    payload = customer_pb2.ActivityLogged(
        activity_id=f"erp-{uuid.uuid4().hex[:12]}",
        customer_id=customer_id,
        kind=customer_pb2.ACTIVITY_KIND_MEETING_BOOKED,
        detail="Demo booked from the partner portal",
    )
    payload.occurred_at.FromDatetime(now)
    # UUIDv7 event ids keep the log's index ordered; uuid7 is in Python 3.14's
    # standard library, uuid4 is accepted too.
    event_id = str(uuid.uuid7()) if hasattr(uuid, "uuid7") else str(uuid.uuid4())
    envelope = envelope_pb2.Envelope(
        event_id=event_id,
        event_type="ActivityLogged",
        stream=f"customer.{customer_id}",
        schema_version=1,
        correlation_id=event_id,
        actor=envelope_pb2.Actor(kind=envelope_pb2.ACTOR_KIND_INTEGRATION, id="partner-portal"),
        payload=payload.SerializeToString(),
    )
    envelope.occurred_at.FromDatetime(now)
    envelope.recorded_at.FromDatetime(now)
    return envelope


async def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
    customer_id = sys.argv[2] if len(sys.argv) > 2 else "cus_12345"
    envelope = activity_event(customer_id)
    connection = await nats.connect(url)
    jetstream = connection.jetstream()
    ack = await jetstream.publish(
        f"crm.evt.customer.{customer_id}",
        envelope.SerializeToString(),
        headers={
            # Deduplication: a retry with the same event id is stored once.
            "Nats-Msg-Id": envelope.event_id,
            "Crm-Event-Type": envelope.event_type,
        },
    )
    print(f"{envelope.event_id} stored at position {ack.seq} of {ack.stream}")
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
