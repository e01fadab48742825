"""Labelling of the images that have no label yet, by the backend ``params.labeling_backend`` names.

The operator does what every backend shares: adds the boxes that came with the photos, finds the
images under the input prefix that still have no label, lets the backend have them labelled
(waiting in the triggerer, no worker slot held), and merges what comes back into
``manifests/labels.manifest``. A backend (``operators/labeling_backends.py``) only starts or
re-attaches to its work and returns the new labels in Ground Truth's manifest form, so the rest of
the DAG does not know which tool labelled an image.

With Label Studio, the backend may first ask for a wait of its own (a :class:`Wait`): the batch
transform job that pre-draws the current model's boxes, resumed by :meth:`execute_after_prelabel`,
which simply starts again (every step re-attaches), now importing the tasks with their boxes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deeplens_pipeline import groundtruth as gt
from deeplens_pipeline.layout import BucketLayout
from deeplens_pipeline.operators.base import PipelineOperator, read_or_empty, run_config, run_scope

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_labels(s3: S3Hook, layout: BucketLayout, key: str, config: dict[str, Any]) -> list[gt.LabelledImage]:
    """The labels in the manifest at ``key`` (empty when it does not exist yet)."""
    text = read_or_empty(s3, layout.bucket, key)
    return list(
        gt.parse_manifest(
            text.splitlines(), config["label_attribute"], config["classes"], source=layout.uri(key)
        )
    )


def write_labels(
    s3: S3Hook, layout: BucketLayout, labels: list[gt.LabelledImage], config: dict[str, Any], tag: str
) -> None:
    """Replace the labels manifest, keeping a copy of the previous one (taken once per ``tag``)."""
    backup = layout.labels_backup_key(tag)
    if s3.check_for_key(layout.labels_key, layout.bucket) and not s3.check_for_key(backup, layout.bucket):
        s3.copy_object(layout.labels_key, backup, layout.bucket, layout.bucket)
    body = "".join(image.to_line(config["label_attribute"], config["classes"]) + "\n" for image in labels)
    s3.load_string(body, layout.labels_key, layout.bucket, replace=True)


def append_history(
    s3: S3Hook,
    layout: BucketLayout,
    withdrawn: list[tuple[gt.LabelledImage, str]],
    config: dict[str, Any],
    tag: str,
) -> None:
    """Add withdrawn labels to ``manifests/labels-history.manifest`` with the reason and the run."""
    key = layout.labels_history_key
    old = read_or_empty(s3, layout.bucket, key)
    lines = []
    for label, reason in withdrawn:
        record = json.loads(label.to_line(config["label_attribute"], config["classes"]))
        record["deeplens-withdrawn"] = {"reason": reason, "by": tag}
        lines.append(json.dumps(record, separators=(",", ":")) + "\n")
    s3.load_string(old + "".join(lines), key, layout.bucket, replace=True)


class LabelImagesOperator(PipelineOperator):
    """Have the unlabelled images labelled by ``params.labeling_backend``, wait, merge the labels.

    Every backend names its work after the run (a Ground Truth job, a batch of Label Studio tasks),
    so a retried task re-attaches instead of paying or asking for the work twice. Returns the
    backend, the work's name, this run's counts, what was left out, and the totals (Label Studio
    adds ``project``, ``project_url``, ``export`` and ``prelabel``).
    """

    template_fields = ("images",)

    def __init__(
        self,
        *,
        images: Any = None,
        label_studio_conn_id: str | None = None,
        prelabel: bool = True,
        prelabel_threshold: float | None = None,
        prelabel_instance_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # The images stage's summary (its "images": key and source SHA-256 of every usable image):
        # labels are tied to those digests. None (e.g. a DAG without the images stage): not checked.
        self.images = images
        from deeplens_pipeline.hooks.label_studio import DEFAULT_CONN_ID

        self.label_studio_conn_id = label_studio_conn_id or DEFAULT_CONN_ID
        # Label Studio only: new tasks arrive with the current model's boxes drawn (scores at least
        # prelabel_threshold, else params.detection_threshold), from a batch transform job.
        if prelabel_threshold is not None and not 0 <= float(prelabel_threshold) <= 1:
            raise ValueError(f"prelabel_threshold must be between 0 and 1, not {prelabel_threshold!r}")
        self.prelabel = prelabel
        self.prelabel_threshold = prelabel_threshold
        self.prelabel_instance_type = prelabel_instance_type

    def _backend(self, context: Any, config: dict[str, Any]) -> Any:
        from deeplens_pipeline.operators.labeling_backends import BACKENDS

        return BACKENDS[config["labeling_backend"]](self, config, run_scope(context))

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        backend = self._backend(context, config)
        s3, layout = self.s3(config), self.layout(config)
        outcome = backend.start(lambda: self._pending(s3, layout, config, backend.name))
        if outcome is None:
            return self._result(config, backend, None)
        if isinstance(outcome, str) and outcome == backend.FINISHED:
            return self._finish(context, config, backend, None)
        from deeplens_pipeline.operators.labeling_backends import Wait

        if isinstance(outcome, Wait):
            self.defer(trigger=outcome.trigger, method_name=outcome.method, timeout=outcome.timeout)
        self.defer(trigger=outcome, method_name="execute_complete", timeout=backend.defer_timeout())

    def execute_after_prelabel(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the pre-labelling transform job ended: start again, now importing the tasks
        (the backend re-reads the job, so a failed one means tasks without pre-drawn boxes)."""
        self.log.info("Pre-labelling transform job ended: %s", event)
        return self.execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        config = run_config(context)
        return self._finish(context, config, self._backend(context, config), event)

    def _pending(self, s3: S3Hook, layout: BucketLayout, config: dict[str, Any], tag: str) -> list[str]:
        """The images under the input prefix that have no label (after adding the pre-labelled ones)."""
        # First the labels that no longer match their pixels leave; then boxes that came with the
        # photos (a replaced photo's new boxes included) join.
        self._follow_pixels(s3, layout, config, read_labels(s3, layout, layout.labels_key, config), tag)
        labels = self._merge_prelabelled(s3, layout, config, tag)
        labelled = {image.source_ref for image in labels}
        keys = s3.list_keys(bucket_name=layout.bucket, prefix=layout.input_prefix) or []
        todo = sorted(
            layout.uri(k)
            for k in keys
            if k.lower().endswith(IMAGE_SUFFIXES) and layout.uri(k) not in labelled
        )
        self.log.info(
            "%d image(s) under %s, %d already labelled, %d to label",
            len(keys),
            layout.uri(layout.input_prefix),
            len(labelled),
            len(todo),
        )
        return todo

    def _record_sent(self, s3: S3Hook, layout: BucketLayout) -> None:
        """Add this run's images to ``manifests/sent-for-labelling.list``: labelled or left out,
        they no longer count as new photos towards ``min_new_photos`` (see ``new_photos``)."""
        from deeplens_pipeline import new_photos

        if not isinstance(self.images, dict) or not isinstance(self.images.get("images"), list):
            return
        key = layout.sent_for_labelling_key
        known = new_photos.read_marks(read_or_empty(s3, layout.bucket, key))
        marks = {new_photos.photo_mark(image, layout.uri) for image in self.images["images"]}
        if not marks <= known:
            s3.load_string(new_photos.write_marks(known | marks), key, layout.bucket, replace=True)
            self.log.info("%d photo(s) recorded in %s", len(marks - known), layout.uri(key))

    def _digests(self, layout: BucketLayout) -> dict[str, str] | None:
        """Image URI → SHA-256 of its source photo, from the images stage (None when not given)."""
        if not isinstance(self.images, dict) or not isinstance(self.images.get("images"), list):
            return None
        return {layout.uri(i["key"]): i["sha256"] for i in self.images["images"] if i.get("sha256")}

    def _follow_pixels(
        self,
        s3: S3Hook,
        layout: BucketLayout,
        config: dict[str, Any],
        labels: list[gt.LabelledImage],
        tag: str,
    ) -> list[gt.LabelledImage]:
        """Keep only labels drawn on today's pixels: a replaced photo is labelled again, a deleted
        one leaves the labels, a moved one keeps its boxes. What leaves goes to the history."""
        current = self._digests(layout)
        if current is None:
            return labels
        result = gt.reconcile_with_images(labels, current)
        if not result.changed:
            return labels
        for old, new in result.moved:
            self.log.info("Labels follow a moved photo: %s → %s", old, new)
        for label, reason in result.withdrawn:
            self.log.warning(
                "Labels of %s withdrawn (%s); kept in %s",
                label.source_ref,
                reason,
                layout.uri(layout.labels_history_key),
            )
        if result.withdrawn:
            append_history(s3, layout, result.withdrawn, config, tag)
        write_labels(s3, layout, result.labels, config, f"{tag}-pixels")
        return result.labels

    def _merge_prelabelled(
        self, s3: S3Hook, layout: BucketLayout, config: dict[str, Any], tag: str
    ) -> list[gt.LabelledImage]:
        labels = read_labels(s3, layout, layout.labels_key, config)
        known = {image.source_ref for image in labels}
        pre = [
            i for i in read_labels(s3, layout, layout.prelabelled_key, config) if i.source_ref not in known
        ]
        if pre:
            self.log.info("Adding %d image(s) that came with boxes to the labels", len(pre))
            labels = gt.merge_labels(labels, pre)
            write_labels(s3, layout, labels, config, f"{tag}-prelabelled")
        return labels

    def _finish(
        self, context: Any, config: dict[str, Any], backend: Any, event: dict[str, Any] | None
    ) -> dict[str, Any]:
        s3, layout = self.s3(config), self.layout(config)
        digests = self._digests(layout) or {}
        new = [replace(label, digest=digests.get(label.source_ref)) for label in backend.collect(event)]
        labels = gt.merge_labels(read_labels(s3, layout, layout.labels_key, config), new)
        write_labels(s3, layout, labels, config, backend.work_name)
        return self._result(config, backend, gt.summarise(new, config["classes"]).as_dict(), labels)

    def _result(
        self,
        config: dict[str, Any],
        backend: Any,
        work_summary: dict[str, Any] | None,
        labels: list[gt.LabelledImage] | None = None,
    ) -> dict[str, Any]:
        s3, layout = self.s3(config), self.layout(config)
        if labels is None:
            labels = read_labels(s3, layout, layout.labels_key, config)
        self._record_sent(s3, layout)
        total = gt.summarise(labels, config["classes"]).as_dict()
        if work_summary is not None:
            self.log.info("%s %s: %s", backend.name, backend.work_name, work_summary)
        self.log.info("All labels: %s", total)
        return {
            "backend": backend.name,
            "job_name": backend.work_name if work_summary is not None else None,
            "job": work_summary,
            "left_out": backend.left_out or None,
            **backend.extra_result(),
            "labels_manifest": layout.uri(layout.labels_key),
            "total": total,
        }


# The operator's name before Label Studio joined Ground Truth (kept for DAGs that import it).
GroundTruthLabelingOperator = LabelImagesOperator
