"""The DAG's schedule when new photos start runs: an asset watched on the S3 notification queue.

Airflow 3 (asset watchers exist from 3.0.1): ``Asset(..., watchers=[AssetWatcher(trigger=...)])``
with the common-messaging provider's ``MessageQueueTrigger(scheme="sqs", sqs_queue=...)``, which
hands the queue to the Amazon provider's ``SqsSensorTrigger``. Importing that trigger at parse
would load the provider registry, boto3 and botocore at every parse of the DAG file, so
:class:`NewPhotosQueueTrigger` stands in for it at parse: it serializes to exactly what
``MessageQueueTrigger`` serializes to (tests compare them), and the triggerer runs the Amazon
provider's ``SqsSensorTrigger`` as it would for ``MessageQueueTrigger``. Airflow 2.11 has no
asset watchers: there :func:`dag_schedule` keeps the cron (or manual) schedule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from deeplens_pipeline.airflow_compat import AIRFLOW_3, AIRFLOW_VERSION
from deeplens_pipeline.new_photos import ASSET_NAME, PHOTO_EVENT_PATH, queue_region

SQS_TRIGGER = "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"
"""What ``MessageQueueTrigger(scheme="sqs", ...)`` resolves to (Amazon provider's queue provider)."""
WATCHER_NAME = "new_photos_queue"
WATCHES = tuple(int(p) for p in AIRFLOW_VERSION.split(".")[:3] if p.isdigit()) >= (3, 0, 1)
"""Whether this Airflow has asset watchers (3.0.1 and later)."""


def watcher_kwargs(queue_url: str, aws_conn_id: str | None, region_name: str | None = None) -> dict[str, Any]:
    """The SQS trigger's arguments: up to 10 batches of 10 messages per poke, S3 object events only."""
    return {
        "sqs_queue": queue_url,
        "aws_conn_id": aws_conn_id,
        "region_name": region_name,
        # One poke makes num_batches ReceiveMessage calls in a row (an empty one still waits its
        # wait_time_seconds) and fires one asset event with every photo event it got: the photos
        # of a burst that land within some 20 s of the first make one event (up to 100 messages).
        "max_messages": 10,  # SQS's most per ReceiveMessage
        "num_batches": 10,
        "wait_time_seconds": 2,  # long polling, short enough that a poke ends soon after a burst
        "waiter_delay": 30,  # between pokes that found nothing: idle, 12 ReceiveMessage calls a minute
        # s3:TestEvent (sent when the notification is saved) has no Records: not a photo. The
        # setup command deletes it; one that slips through stays unmatched and expires.
        "message_filtering": "jsonpath",
        "message_filtering_config": PHOTO_EVENT_PATH,
        "message_filtering_match_values": None,
        "delete_message_on_reception": True,
        "visibility_timeout": None,
        "verify": None,
        "botocore_config": None,
    }


if AIRFLOW_3:
    from airflow.triggers.base import BaseEventTrigger, TriggerEvent

    class NewPhotosQueueTrigger(BaseEventTrigger):
        """``MessageQueueTrigger(scheme="sqs", **kwargs)`` without its imports at parse."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            self.kwargs = kwargs

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return SQS_TRIGGER, dict(self.kwargs)

        async def run(self) -> AsyncIterator[TriggerEvent]:  # the triggerer runs SQS_TRIGGER instead
            from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

            async for event in MessageQueueTrigger(scheme="sqs", **self.kwargs).run():
                yield event


def new_photos_asset(queue_url: str, aws_conn_id: str | None, region_name: str | None = None) -> Any:
    """The asset the new-photos queue's watcher updates."""
    from airflow.sdk import Asset, AssetWatcher

    trigger = NewPhotosQueueTrigger(**watcher_kwargs(queue_url, aws_conn_id, region_name))
    return Asset(ASSET_NAME, watchers=[AssetWatcher(name=WATCHER_NAME, trigger=trigger)])


def dag_schedule(cron: str | None, queue_url: str | None, aws_conn_id: str | None) -> Any:
    """The DAG's ``schedule``: the new-photos asset, or the cron, or both (either starts a run).

    Without a queue URL, or on an Airflow without asset watchers, the cron (None: manual only).
    """
    cron = (cron or "").strip() or None
    queue_url = (queue_url or "").strip() or None
    if not queue_url or not WATCHES:
        return cron
    # The queue's own region (from its URL): the watcher reads it whatever the connection's region.
    asset = new_photos_asset(queue_url, aws_conn_id, queue_region(queue_url))
    if cron is None:
        return asset
    try:
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable
    except ImportError:  # Airflow 3.0
        from airflow.timetables.assets import AssetOrTimeSchedule
        from airflow.timetables.trigger import CronTriggerTimetable
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=asset)
