"""The seed article's webhook handler, as the baseline: pydantic validation,
400 on empty data, a no-op BackgroundTask, answer `received`. Nothing is
persisted, so every queued event is lost on a crash."""

import uuid

from fastapi import BackgroundTasks, FastAPI, HTTPException
from pydantic import BaseModel


class WebhookEvent(BaseModel):
    event_type: str
    data: dict


app = FastAPI()


def process_event_async(event_id: str, payload: dict):
    pass


@app.post("/crm/webhooks/interaction")
async def handle_interaction(event: WebhookEvent, background_tasks: BackgroundTasks):
    if not event.data:
        raise HTTPException(status_code=400, detail="数据为空")
    event_id = str(uuid.uuid4())
    background_tasks.add_task(process_event_async, event_id, event.data)
    return {"status": "received", "event_id": event_id}
