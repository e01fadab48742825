"""The split task: validation is the fixed holdout, recorded in the bucket, and it only grows."""

import json
from types import SimpleNamespace

import pytest

from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.operators.split import SplitManifestOperator

BUCKET = "deeplens-split-test"
CLASSES = ["blue_box", "yellow_box"]
BOX = [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}]


@pytest.fixture
def s3(empty_bucket, aws_conn, monkeypatch):
    monkeypatch.setenv("DEEPLENS_ENVIRONMENT", "split-test")
    return empty_bucket(BUCKET)


def _label(s3, n: int) -> None:
    lines = [
        LabelledImage(f"s3://{BUCKET}/input/{i:03d}.jpg", 10, 10, 3, BOX, digest=f"{i:064x}").to_line(
            "bounding-box", CLASSES
        )
        for i in range(n)
    ]
    s3.put_object(Bucket=BUCKET, Key="manifests/labels.manifest", Body="\n".join(lines).encode())


def _split(s3, run_id: str) -> tuple[dict, set[str], set[str]]:
    context = {
        "run_id": run_id,
        "dag_run": SimpleNamespace(dag_id="deeplens_object_detection"),
        "params": {"bucket": BUCKET, "classes": CLASSES},
    }
    result = SplitManifestOperator(task_id="split_manifest").execute(context)

    def refs(uri: str) -> set[str]:
        key = uri.removeprefix(f"s3://{BUCKET}/")
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        return {json.loads(line)["source-ref"] for line in body.splitlines() if line}

    return result, refs(result["train_uri"]), refs(result["validation_uri"])


def test_the_holdout_is_recorded_and_only_grows(s3):
    _label(s3, 60)
    first, train, held = _split(s3, "manual__2026-11-26T07:00:00+00:00")
    assert first["validation_count"] == len(held) > 0 and first["holdout_new"] == len(held)
    recorded = s3.get_object(Bucket=BUCKET, Key="manifests/holdout.list")["Body"].read().decode()
    assert recorded.startswith("# ") and len(recorded.splitlines()) == len(held) + 1

    _label(s3, 200)  # new photos labelled since: the earlier split keeps every image where it was
    second, train_later, held_later = _split(s3, "manual__2026-11-27T07:00:00+00:00")
    assert held <= held_later and train <= train_later
    assert not held_later & train_later
    assert second["holdout_new"] == len(held_later - held)
    assert second["train_count"] + second["validation_count"] == 200
