"""A simulated annotator for Label Studio: labels a project's tasks from the sample dataset's answer key.

It plays the human labeller of the Label Studio path, as the Ground Truth simulation
(:mod:`emulator.extension.groundtruth`) plays the private work team, and works only through Label
Studio's own API (label-studio-sdk) and S3:

* each task's data is ``{"image": "s3://<bucket>/<key>"}`` (other keys are ignored; the data key is the
  ``value`` of the config's ``<Image>``), read unresolved (``resolve_uri=false``);
* a task with no annotation yet (submitted or cancelled) and created at least ``delay_seconds`` ago is
  labelled: the S3 object's metadata ``deeplens-source`` (the original file name) finds its answer in
  the answer key, ``deeplens-transform`` (scale, dx, dy, size) maps each box into the prepared image
  exactly as the Ground Truth simulation does (:func:`~emulator.extension.groundtruth.map_box`), and
  one annotation is posted whose results are ``rectanglelabels`` in percent of the image's pixel size;
* objects whose label is not among the project's ``<RectangleLabels>`` classes are skipped, as are
  boxes mostly outside the prepared image; an image without an answer (or without the metadata) gets
  an empty annotation, as the Ground Truth simulation's worker draws no box;
* a task that came with pre-drawn boxes (a prediction: the pipeline's pre-labels) is corrected, as a
  person would (:func:`correct_predictions`): a pre-drawn box that matches an answer (same class,
  IoU ≥ ``keep_iou``) is kept exactly as drawn, one that overlaps an answer less well or with the
  wrong class is moved onto it (same region), the others are deleted, and answers no pre-drawn box
  covered are drawn.

``python -m emulator.label_studio_annotator --url URL --token TOKEN --project-title-prefix P
--endpoint-url S3_URL --answer-key answer_key.json`` runs it until interrupted (the demo's labeller).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from emulator.extension.groundtruth import load_answer_keys, map_box, split_s3_uri

log = logging.getLogger("emulator.label_studio_annotator")


@dataclass(frozen=True)
class RectangleConfig:
    """What a project's labelling config asks for: the control, the image it labels, the classes."""

    from_name: str
    to_name: str
    data_key: str
    classes: tuple[str, ...]


def parse_label_config(label_config: str) -> RectangleConfig:
    """The first ``<RectangleLabels>`` of a labelling config, its ``<Image>`` and its ``<Label>`` values.

    ValueError when the config has no ``<RectangleLabels>`` or its ``toName`` names no ``<Image>``.
    """
    root = ET.fromstring(label_config)
    control = next((e for e in root.iter() if e.tag.lower() == "rectanglelabels"), None)
    if control is None:
        raise ValueError("the labelling config has no <RectangleLabels>")
    to_name = control.get("toName", "").split(",")[0].strip()
    image = next(
        (e for e in root.iter() if e.tag.lower() == "image" and e.get("name") == to_name),
        None,
    )
    if image is None:
        raise ValueError(f"the labelling config has no <Image name={to_name!r}> for its <RectangleLabels>")
    classes = tuple(e.get("value", "") for e in control.iter() if e.tag.lower() == "label")
    return RectangleConfig(
        from_name=control.get("name", ""),
        to_name=to_name,
        data_key=image.get("value", "").lstrip("$"),
        classes=tuple(c for c in classes if c),
    )


def rectangle_results(
    answer: dict[str, Any] | None,
    transform: dict[str, Any] | None,
    width: int,
    height: int,
    config: RectangleConfig,
) -> list[dict[str, Any]]:
    """Label Studio ``rectanglelabels`` results (percent of ``width`` by ``height``) for an answer's
    objects mapped through the preprocessing ``transform``; [] without an answer or a transform."""
    if answer is None or transform is None:
        return []
    results = []
    for obj in answer["objects"]:
        if obj["label"] not in config.classes:
            continue
        box = map_box(obj, transform)
        if box is None:
            continue
        results.append(
            {
                "from_name": config.from_name,
                "to_name": config.to_name,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": 100.0 * box["left"] / width,
                    "y": 100.0 * box["top"] / height,
                    "width": 100.0 * box["width"] / width,
                    "height": 100.0 * box["height"] / height,
                    "rotation": 0,
                    "rectanglelabels": [obj["label"]],
                },
            }
        )
    return results


KEEP_IOU = 0.5
"""A pre-drawn box this close to an answer of its class is good enough: the annotator keeps it."""
FIX_IOU = 0.1
"""A pre-drawn box overlapping an answer at least this much is dragged onto it rather than deleted."""


def _percent_box(item: dict[str, Any]) -> tuple[float, float, float, float]:
    v = item["value"]
    return float(v["x"]), float(v["y"]), float(v["x"]) + float(v["width"]), float(v["y"]) + float(v["height"])


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def correct_predictions(
    predicted: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    config: RectangleConfig,
    keep_iou: float = KEEP_IOU,
    fix_iou: float = FIX_IOU,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The annotation a careful person submits for a task that came with pre-drawn boxes.

    ``predicted``: the prediction's results; ``answers``: :func:`rectangle_results` of the answer key
    (same percent coordinates). Pre-drawn boxes are taken highest score first; each is matched to
    the unused answer it overlaps most. Kept (same class, IoU ≥ ``keep_iou``): the region exactly as
    drawn. Fixed (IoU ≥ ``fix_iou``): the region keeps its id and takes the answer's box and class.
    Otherwise deleted. Answers left over are drawn as new regions. Returns the results and the
    counts ``{"kept", "fixed", "deleted", "drawn"}``.
    """
    ours = [
        p
        for p in predicted
        if p.get("type") == "rectanglelabels" and p.get("from_name") == config.from_name and p.get("value")
    ]
    ours.sort(key=lambda p: -float(p.get("score") or 0))
    free = list(range(len(answers)))
    results: list[dict[str, Any]] = []
    counts = {"kept": 0, "fixed": 0, "deleted": 0, "drawn": 0}
    for number, item in enumerate(ours):
        box = _percent_box(item)
        scored = [(_iou(box, _percent_box(answers[j])), j) for j in free]
        overlap, j = max(scored, default=(0.0, -1))
        region = item.get("id") or f"pre-{number}"
        if (
            j >= 0
            and overlap >= keep_iou
            and (item["value"].get("rectanglelabels") == answers[j]["value"]["rectanglelabels"])
        ):
            free.remove(j)
            kept = {k: v for k, v in item.items() if k != "score"}
            results.append({**kept, "id": region})
            counts["kept"] += 1
        elif j >= 0 and overlap >= fix_iou:
            free.remove(j)
            results.append({**answers[j], "id": region})
            counts["fixed"] += 1
        else:
            counts["deleted"] += 1
    for n, j in enumerate(free):
        results.append({**answers[j], "id": f"drawn-{n}"})
        counts["drawn"] += 1
    return results, counts


def _prediction_result(task: Any) -> list[dict[str, Any]] | None:
    """The newest prediction's results of a task (None when it came without one)."""
    predictions = [p for p in (getattr(task, "predictions", None) or []) if p is not None]
    if not predictions:
        return None

    def stamp(p: Any) -> tuple[str, int]:
        created = p.get("created_at") if isinstance(p, dict) else getattr(p, "created_at", None)
        ident = p.get("id") if isinstance(p, dict) else getattr(p, "id", None)
        return str(created or ""), int(ident or 0)

    newest = max(predictions, key=stamp)
    result = newest.get("result") if isinstance(newest, dict) else getattr(newest, "result", None)
    return list(result or [])


def make_client(client_or_url: Any, token: str | None):
    """A label-studio-sdk client: ``client_or_url`` itself, or a new one for that URL and token."""
    if not isinstance(client_or_url, str):
        return client_or_url
    if not token:
        raise ValueError("a Label Studio URL needs an API token")
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=client_or_url.rstrip("/"), api_key=token)


def _task_is_pending(task: Any, now: datetime, delay_seconds: float) -> bool:
    if (task.total_annotations or 0) + (task.cancelled_annotations or 0) > 0:
        return False
    created = task.created_at
    if created is None:
        return True
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds() >= delay_seconds


def _label_task(task: Any, config: RectangleConfig, s3_client: Any, answers: dict[str, Any]) -> list | None:
    """The results for one task, or None when its image cannot be read (tried again next pass)."""
    data = task.data or {}
    uri = data.get(config.data_key)
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        log.warning(
            "task %s: data[%r] is not an s3:// URI (%r); left unlabelled", task.id, config.data_key, uri
        )
        return None
    bucket, key = split_s3_uri(uri)
    try:
        obj = s3_client.get_object(Bucket=bucket, Key=key)
        body = obj["Body"].read()
    except Exception as err:  # botocore's ClientError, or the endpoint unreachable
        log.warning("task %s: could not read %s (%s); left unlabelled", task.id, uri, err)
        return None
    with Image.open(io.BytesIO(body)) as image:
        width, height = image.size
    meta = obj.get("Metadata", {})
    answer = answers.get(PurePosixPath(meta.get("deeplens-source", key)).name)
    transform = json.loads(meta["deeplens-transform"]) if "deeplens-transform" in meta else None
    if answer is None:
        log.info("task %s: no answer for %s: the simulated annotator draws no box", task.id, uri)
    elif transform is None:
        log.info("task %s: %s has no deeplens-transform metadata: no box", task.id, uri)
    answers = [
        {**item, "id": f"drawn-{n}"}
        for n, item in enumerate(rectangle_results(answer, transform, width, height, config))
    ]
    predicted = _prediction_result(task)
    if predicted is None:
        return answers
    results, counts = correct_predictions(predicted, answers, config)
    log.info("task %s: corrected the pre-drawn boxes: %s", task.id, counts)
    return results


def annotate_pending(
    client_or_url: Any,
    token: str | None,
    project_id: int,
    s3_client: Any,
    answers: dict[str, dict[str, Any]],
    delay_seconds: float = 0.0,
) -> int:
    """One pass over a project: annotate every task without annotations created ``delay_seconds`` ago
    or earlier. ``client_or_url``: a label-studio-sdk ``LabelStudio`` or the server's URL (then
    ``token`` is its API key). ``answers``: file name → answer, from
    :func:`~emulator.extension.groundtruth.load_answer_keys`. Returns how many tasks it annotated."""
    client = make_client(client_or_url, token)
    project = client.projects.get(id=project_id)
    config = parse_label_config(project.label_config or "")
    now = datetime.now(UTC)
    done = 0
    pending = [
        t
        for t in client.tasks.list(project=project_id, fields="all", resolve_uri=False)
        if _task_is_pending(t, now, delay_seconds)
    ]
    for task in pending:
        results = _label_task(task, config, s3_client, answers)
        if results is None:
            continue
        client.annotations.create(id=task.id, result=results, was_cancelled=False)
        log.info("project %s task %s: annotated with %d box(es)", project_id, task.id, len(results))
        done += 1
    return done


def find_projects(
    client: Any, *, project_id: int | None = None, title_prefix: str | None = None
) -> list[int]:
    """``[project_id]``, or the ids of every project whose title starts with ``title_prefix``."""
    if project_id is not None:
        return [project_id]
    if title_prefix is None:
        raise ValueError("give a project id or a title prefix")
    return sorted(p.id for p in client.projects.list() if (p.title or "").startswith(title_prefix))


class AnnotatorThread(threading.Thread):
    """Runs :func:`annotate_pending` every ``interval`` seconds over the project ``project_id`` or every
    project whose title starts with ``title_prefix`` (looked up on each pass, so projects created later
    are labelled too), until :meth:`stop`. Errors are logged and the loop goes on."""

    def __init__(
        self,
        client_or_url: Any,
        token: str | None,
        *,
        s3_client: Any,
        answers: dict[str, dict[str, Any]],
        project_id: int | None = None,
        title_prefix: str | None = None,
        delay_seconds: float = 0.0,
        interval: float = 1.0,
    ):
        super().__init__(name="label-studio-annotator", daemon=True)
        if project_id is None and title_prefix is None:
            raise ValueError("give a project id or a title prefix")
        self.client = make_client(client_or_url, token)
        self.s3_client = s3_client
        self.answers = answers
        self.project_id = project_id
        self.title_prefix = title_prefix
        self.delay_seconds = delay_seconds
        self.interval = interval
        self.annotated = 0
        self.passes = 0
        self.last_error: BaseException | None = None
        self._stop_event = threading.Event()

    def run_once(self) -> int:
        """One pass over the matching projects; how many tasks it annotated."""
        done = 0
        for pid in find_projects(self.client, project_id=self.project_id, title_prefix=self.title_prefix):
            done += annotate_pending(self.client, None, pid, self.s3_client, self.answers, self.delay_seconds)
        return done

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.annotated += self.run_once()
                self.last_error = None
            except Exception as err:  # a server restarting, a project deleted: try again next pass
                self.last_error = err
                log.warning("annotator pass failed: %s", describe_error(err))
            self.passes += 1
            self._stop_event.wait(self.interval)

    def stop(self, timeout: float = 30) -> None:
        """Stop after the current pass."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def describe_error(err: BaseException) -> str:
    """A short description (label-studio-sdk's ApiError prints every response header otherwise)."""
    status = getattr(err, "status_code", None)
    if status is not None:
        return f"HTTP {status}: {getattr(err, 'body', '')}"
    return f"{type(err).__name__}: {err}"


def s3_client_for(endpoint_url: str, region: str = "us-east-1") -> Any:
    """An S3 client for the emulator; its own access key unless the environment gives one."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "label-studio-annotator"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "emulator"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.label_studio_annotator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--url", required=True, help="Label Studio's URL")
    parser.add_argument(
        "--token",
        default=os.environ.get("LABEL_STUDIO_TOKEN"),
        help="API token (default $LABEL_STUDIO_TOKEN)",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--project-id", type=int)
    which.add_argument("--project-title-prefix", help="label every project whose title starts with this")
    parser.add_argument("--endpoint-url", required=True, help="the S3 endpoint (the emulator's URL)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--answer-key", type=Path, action="append", required=True, help="answer_key.json (repeatable)"
    )
    parser.add_argument("--delay", type=float, default=5.0, help="seconds a task waits before it is labelled")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if not args.token:
        parser.error("--token (or LABEL_STUDIO_TOKEN) is required")
    answers = load_answer_keys(tuple(args.answer_key))
    annotator = AnnotatorThread(
        args.url,
        args.token,
        s3_client=s3_client_for(args.endpoint_url, args.region),
        answers=answers,
        project_id=args.project_id,
        title_prefix=args.project_title_prefix,
        delay_seconds=args.delay,
        interval=args.interval,
    )
    if args.once:
        try:
            print(annotator.run_once())
        except Exception as err:
            print(f"error: {describe_error(err)}", file=sys.stderr)
            return 1
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    annotator.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    annotator.stop()
    log.info("annotated %d task(s)", annotator.annotated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
