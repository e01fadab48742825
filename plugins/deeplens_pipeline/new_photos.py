"""New photos start a run: the rules, without Airflow or boto3.

S3 sends an event per uploaded object to an SQS queue; an Airflow asset watcher turns the queue's
messages into asset events, and the scheduler starts one DAG run for all the events queued
before it (``max_active_runs=1``: events that arrive during a run start the next one). The
messages only wake the DAG: the images stage diffs the photo source against the image ledger,
so a run takes every photo not yet processed, and a failed run loses nothing.

``min_new_photos`` counts the photos *waiting*: usable images that no run has had labelled yet
(``manifests/sent-for-labelling.list``, by the photo's SHA-256) and that have no label on today's
pixels, however many runs prepared them. A run that stopped short therefore leaves its photos
counted towards the next one: bursts of 5 with ``min_new_photos`` 10 go on at the second burst. A
photo counts until a run sends it for labelling: one left out there (skipped, not annotated in
time, no boxes with ``labeling_backend`` none) is sent again by the next run that goes on, but no
longer starts one by itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from deeplens_pipeline.groundtruth import DIGEST_KEY, LabelledImage, reconcile_with_images

QUEUE_URL_ENV = "DEEPLENS_NEW_PHOTOS_QUEUE_URL"
"""The SQS queue S3 notifies of new photos; set, the DAG is also scheduled on the asset below."""
ASSET_NAME = "deeplens_new_photos"
"""The asset the watcher updates (one per Airflow environment)."""
PHOTO_EVENT_PATH = "Records[*].s3.object.key"
"""JSONPath the watcher filters messages with: S3 object events have it, ``s3:TestEvent`` has not."""
GATED_RUN_TYPES = frozenset({"asset_triggered", "dataset_triggered", "scheduled"})
"""Runs ``min_new_photos`` applies to: a manual run always goes ahead (someone asked for it)."""


_REGION = r"([a-z]{2}(?:-[a-z]+)+-\d+)"
_SQS_HOST = re.compile(
    rf"^https://(?:sqs(?:-fips)?\.{_REGION}\.(?:amazonaws\.com(?:\.cn)?|api\.aws)"
    rf"|{_REGION}\.queue\.amazonaws\.com(?:\.cn)?)/"
)


def queue_region(queue_url: str) -> str | None:
    """The AWS region in an SQS queue URL (``https://sqs.<region>.amazonaws.com/...``, and the
    FIPS, dual-stack ``api.aws``, China and legacy ``<region>.queue`` hosts of the endpoint list);
    None for another host (an emulator), where the connection's region applies."""
    match = _SQS_HOST.match(queue_url.strip())
    return (match.group(1) or match.group(2)) if match else None


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


def photo_mark(image: dict[str, Any], uri: Callable[[str], str]) -> str:
    """What the sent-for-labelling record keeps of an image: its source SHA-256 (so a moved photo
    stays known and a replaced one is new), or its URI when the images stage recorded no digest."""
    return str(image.get("sha256") or uri(image["key"]))


def read_marks(text: str) -> set[str]:
    """The marks in a sent-for-labelling record (one per line; ``#`` lines are comments)."""
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def write_marks(marks: Iterable[str]) -> str:
    """A sent-for-labelling record's text, sorted (the same set always gives the same object)."""
    body = "".join(f"{mark}\n" for mark in sorted(set(marks)))
    return "# photos a run has had labelled (source SHA-256, or URI): they no longer count as new\n" + body


def label_refs(lines: Iterable[str]) -> list[LabelledImage]:
    """Only the ``source-ref`` and photo digest of each line of a labels manifest.

    Counting waiting photos needs no more, and must not fail where labelling would: a line that is
    not JSON or has no ``source-ref`` is skipped, and no class is checked against the Params.
    """
    refs = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("source-ref"), str):
            digest = record.get(DIGEST_KEY)
            refs.append(LabelledImage(record["source-ref"], 0, 0, 0, [], digest=digest or None))
    return refs


def waiting_photos(
    images: Iterable[dict[str, Any]],
    labels: Iterable[LabelledImage],
    uri: Callable[[str], str],
    sent: set[str] | None = None,
) -> int:
    """How many of the images stage's usable ``images`` (``{"key", "sha256"}``) are still new.

    New: not among ``sent`` (:func:`photo_mark` of the photos a run has had labelled) and without
    a label on today's pixels (:func:`reconcile_with_images`: a replaced photo is new again, a
    moved one keeps its boxes); an image without a recorded digest counts as labelled when its URI
    has a label. ``uri`` turns a key into the manifests' ``s3://`` URI.
    """
    images = list(images)
    labels = list(labels)
    sent = sent or set()
    current = {uri(i["key"]): i["sha256"] for i in images if i.get("sha256")}
    kept = {label.source_ref for label in reconcile_with_images(labels, current).labels}
    any_label = {label.source_ref for label in labels}
    return sum(
        1
        for image in images
        if photo_mark(image, uri) not in sent
        and uri(image["key"]) not in (kept if image.get("sha256") else any_label)
    )


@dataclass(frozen=True)
class NewPhotosDecision:
    """Whether a run goes on past the images stage, and why."""

    go_on: bool
    new_photos: int
    min_new_photos: int
    reason: str
    prepared: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The decision as the task's XCom (and the summary's ``new_photos`` stage)."""
        result: dict[str, Any] = {
            "go_on": self.go_on,
            "new_photos": self.new_photos,
            "min_new_photos": self.min_new_photos,
            "reason": self.reason,
        }
        if self.prepared is not None:
            result["prepared_by_this_run"] = self.prepared
        return result


def decide(
    new_photos: int, min_new_photos: int, run_type: str, prepared: int | None = None
) -> NewPhotosDecision:
    """Go on when the run is manual or at least ``min_new_photos`` photos wait for a label.

    ``new_photos`` is the waiting count (:func:`waiting_photos`); ``prepared``, when given, how many
    of them this run prepared (the rest came from runs that stopped short), for the reason.
    """
    if new_photos < 0 or min_new_photos < 0 or (prepared is not None and prepared < 0):
        raise ValueError("photo counts cannot be negative")
    counted = f"{new_photos} new photo(s) not yet labelled"
    if prepared is not None:
        counted += f" ({prepared} prepared by this run)"
    kind = str(run_type or "").lower().rsplit(".", 1)[-1]
    if kind not in GATED_RUN_TYPES:
        reason = f"{counted}; a {kind or 'manual'} run goes ahead whatever their number"
        return NewPhotosDecision(True, new_photos, min_new_photos, reason, prepared)
    if new_photos >= min_new_photos:
        reason = f"{counted}, at least min_new_photos={min_new_photos}"
        return NewPhotosDecision(True, new_photos, min_new_photos, reason, prepared)
    reason = (
        f"only {counted}, fewer than min_new_photos={min_new_photos}: kept the current model (the "
        "photos are prepared and in S3; they count towards the next run, which labels and trains "
        "on them once there are enough)"
    )
    return NewPhotosDecision(False, new_photos, min_new_photos, reason, prepared)
