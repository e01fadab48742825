"""Where the pipeline keeps things in its bucket (one place, so every stage agrees)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketLayout:
    """Keys and URIs of the pipeline's objects in ``bucket``."""

    bucket: str
    input_prefix: str = "input/"

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    @property
    def output_uri(self) -> str:
        """Output path of labelling and training jobs (as in the original guide)."""
        return self.uri("output/")

    # Labels: one manifest accumulates every labelling job's output (newest label wins).
    labels_key = "manifests/labels.manifest"
    prelabelled_key = "manifests/prelabelled.manifest"
    # Labels withdrawn because their photo was replaced or deleted (never destroyed).
    labels_history_key = "manifests/labels-history.manifest"
    holdout_key = "manifests/holdout.list"
    """The fixed holdout's members (see ``manifest_split``): it only grows."""
    sent_for_labelling_key = "manifests/sent-for-labelling.list"
    """Photos (source SHA-256) a run has had labelled: they no longer count as new (``new_photos``)."""
    label_config_key = "labeling/label-categories.json"
    ui_template_key = "labeling/bounding-box.liquid.html"

    def labels_backup_key(self, tag: str) -> str:
        """Copy of the labels manifest taken before ``tag`` (a job name) changed it."""
        return f"manifests/history/labels.before-{tag}.manifest"

    def labeling_input_key(self, job_name: str) -> str:
        """Input manifest of one labelling job."""
        return f"manifests/labeling/{job_name}/input.manifest"

    def report_key(self, run_id: str, name: str, prefix: str = "reports/") -> str:
        """A report of one DAG run: ``reports/<run id made key-safe>/<name>``."""
        return f"{prefix}{run_segment(run_id)}/{name}"

    def split_keys(self, run_token: str) -> tuple[str, str]:
        """Train and validation manifests of one DAG run (``RunScope.token``)."""
        base = f"manifests/runs/{run_token}"
        return f"{base}/train.manifest", f"{base}/validation.manifest"


def run_segment(run_id: str) -> str:
    """A run id made safe as one S3 key segment (readable, unlike a hash)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", run_id).strip("_") or "run"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key), or ValueError naming the URI."""
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri[5:].startswith("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
