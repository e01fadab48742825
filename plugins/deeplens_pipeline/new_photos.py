"""New photos start a run: the rules, without Airflow or boto3.

S3 sends an event per uploaded object to an SQS queue; an Airflow asset watcher turns the queue's
messages into asset events, and the scheduler starts one DAG run for all the events queued
before it (``max_active_runs=1``: events that arrive during a run start the next one). The
messages only wake the DAG: the images stage diffs the photo source against the image ledger,
so a run takes every photo not yet processed, and a failed run loses nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

QUEUE_URL_ENV = "DEEPLENS_NEW_PHOTOS_QUEUE_URL"
"""The SQS queue S3 notifies of new photos; set, the DAG is also scheduled on the asset below."""
ASSET_NAME = "deeplens_new_photos"
"""The asset the watcher updates (one per Airflow environment)."""
PHOTO_EVENT_PATH = "Records[*].s3.object.key"
"""JSONPath the watcher filters messages with: S3 object events have it, ``s3:TestEvent`` has not."""
GATED_RUN_TYPES = frozenset({"asset_triggered", "dataset_triggered", "scheduled"})
"""Runs ``min_new_photos`` applies to: a manual run always goes ahead (someone asked for it)."""


def is_photo_event(body: str) -> bool:
    """Whether an SQS message body is an S3 object event (not S3's ``s3:TestEvent``, not other JSON)."""
    try:
        message = json.loads(body)
    except ValueError:
        return False
    records = message.get("Records") if isinstance(message, dict) else None
    return bool(records) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:s3" and "object" in r.get("s3", {})
        for r in records
    )


@dataclass(frozen=True)
class NewPhotosDecision:
    """Whether a run goes on past the images stage, and why."""

    go_on: bool
    new_photos: int
    min_new_photos: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The decision as the task's XCom (and the summary's ``new_photos`` stage)."""
        return {
            "go_on": self.go_on,
            "new_photos": self.new_photos,
            "min_new_photos": self.min_new_photos,
            "reason": self.reason,
        }


def decide(new_photos: int, min_new_photos: int, run_type: str) -> NewPhotosDecision:
    """Go on when the run is manual or has at least ``min_new_photos`` new photos."""
    if new_photos < 0 or min_new_photos < 0:
        raise ValueError("photo counts cannot be negative")
    kind = str(run_type or "").lower().rsplit(".", 1)[-1]
    if kind not in GATED_RUN_TYPES:
        reason = f"{new_photos} new photo(s); a {kind or 'manual'} run goes ahead whatever their number"
        return NewPhotosDecision(True, new_photos, min_new_photos, reason)
    if new_photos >= min_new_photos:
        reason = f"{new_photos} new photo(s), at least min_new_photos={min_new_photos}"
        return NewPhotosDecision(True, new_photos, min_new_photos, reason)
    reason = (
        f"only {new_photos} new photo(s), fewer than min_new_photos={min_new_photos}: kept the current "
        "model (the photos are prepared and in S3; the next run that goes on labels and trains on them)"
    )
    return NewPhotosDecision(False, new_photos, min_new_photos, reason)
