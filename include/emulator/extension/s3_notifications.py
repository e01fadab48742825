"""S3 event notifications as AWS checks them, where moto 5.2.5 does not.

moto already delivers ``s3:ObjectCreated:*`` events to SQS queues (and sends ``s3:TestEvent``
when a configuration is saved). It accepts, where S3 answers ``InvalidArgument``:

- two configurations whose event types intersect and whose key filters overlap: "Configuration is
  ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are
  overlapping for the same event type." (Amazon S3 User Guide, "Configuring event notifications
  using object key name filtering": overlapping prefixes/suffixes for the same event type are
  not allowed; repost.aws knowledge-center/lambda-s3-event-configuration-error);
- an SQS destination that does not exist or whose policy does not let ``s3.amazonaws.com`` send
  to it: "Unable to validate the following destination configurations" (S3 validates every
  destination when the configuration is saved; User Guide, "Granting permissions to publish
  event notification messages to a destination").

It also encodes the slashes of an event's object key (``photos%2Fa.jpg``), where S3 keeps them
(``photos/a.jpg``; spaces become ``+``: User Guide, "Event message structure", the key is
URL-encoded as in the example ``s3:ObjectCreated:Put`` events): fixed here too.
"""

from __future__ import annotations

import json
from typing import Any

from moto.s3 import notifications as moto_notifications
from moto.s3.exceptions import S3ClientError
from moto.s3.models import S3Backend

_KINDS = ("QueueConfiguration", "TopicConfiguration", "CloudFunctionConfiguration")


def _rules(config: dict[str, Any]) -> tuple[str, str]:
    rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("FilterRule") or []
    if isinstance(rules, dict):
        rules = [rules]
    found = {str(r.get("Name", "")).lower(): str(r.get("Value", "")) for r in rules}
    return found.get("prefix", ""), found.get("suffix", "")


def _events(config: dict[str, Any]) -> set[str]:
    events = config.get("Event") or []
    return {events} if isinstance(events, str) else set(events)


def _events_intersect(a: set[str], b: set[str]) -> bool:
    def covers(x: str, y: str) -> bool:
        return x == y or (x.endswith("*") and y.startswith(x[:-1]))

    return any(covers(x, y) or covers(y, x) for x in a for y in b)


def _overlap(a: str, b: str, *, suffix: bool = False) -> bool:
    return b.endswith(a) or a.endswith(b) if suffix else b.startswith(a) or a.startswith(b)


def overlapping(configs: list[dict[str, Any]]) -> bool:
    """Whether two configurations would both match one event for one key."""
    for i, a in enumerate(configs):
        for b in configs[i + 1 :]:
            (pa, sa), (pb, sb) = _rules(a), _rules(b)
            if (
                _events_intersect(_events(a), _events(b))
                and _overlap(pa, pb)
                and _overlap(sa, sb, suffix=True)
            ):
                return True
    return False


def _queue_accepts_s3(account_id: str, arn: str) -> bool:
    from moto.sqs.models import sqs_backends

    parts = arn.split(":")
    if len(parts) != 6:
        return False
    queues = sqs_backends[account_id][parts[3]].queues
    queue = queues.get(parts[5])
    if queue is None:
        return False
    policy = json.loads(queue.policy) if getattr(queue, "policy", None) else {}
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal") or {}
        services = principal.get("Service", []) if isinstance(principal, dict) else principal
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (
            statement.get("Effect") == "Allow"
            and ("s3.amazonaws.com" in services or principal == "*")
            and any(a.lower() in ("sqs:sendmessage", "sqs:*", "*") for a in actions)
        ):
            return True
    return False


def check(account_id: str, notification_config: dict[str, Any]) -> None:
    """Raise S3's ``InvalidArgument`` for what S3 refuses in a notification configuration."""
    configs = [c for kind in _KINDS for c in (notification_config.get(kind) or [])]
    if overlapping(configs):
        raise S3ClientError(
            "InvalidArgument",
            "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if "
            "the prefixes are overlapping for the same event type.",
        )
    bad = [
        c["Queue"]
        for c in notification_config.get("QueueConfiguration") or []
        if not _queue_accepts_s3(account_id, c.get("Queue", ""))
    ]
    if bad:
        raise S3ClientError("InvalidArgument", "Unable to validate the following destination configurations")


def _keep_slashes(build: Any) -> Any:
    def _get_s3_event(*args: Any, **kwargs: Any) -> dict[str, Any]:
        event = build(*args, **kwargs)
        for record in event["Records"]:
            record["s3"]["object"]["key"] = record["s3"]["object"]["key"].replace("%2F", "/")
        return event

    return _get_s3_event


def register() -> None:
    """Wrap moto's ``put_bucket_notification_configuration`` with :func:`check` (idempotent)."""
    moto_notifications._get_s3_event = _keep_slashes(moto_notifications._get_s3_event)
    original = S3Backend.put_bucket_notification_configuration
    if getattr(original, "_deeplens_checked", False):
        return

    def put_bucket_notification_configuration(
        self: S3Backend, bucket_name: str, notification_config: dict[str, Any]
    ) -> None:
        self.get_bucket(bucket_name)  # NoSuchBucket first, as S3
        check(self.account_id, notification_config)
        original(self, bucket_name, notification_config)

    put_bucket_notification_configuration._deeplens_checked = True  # type: ignore[attr-defined]
    S3Backend.put_bucket_notification_configuration = put_bucket_notification_configuration  # type: ignore[method-assign]
