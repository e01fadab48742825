import pytest

from deeplens_pipeline.layout import BucketLayout, run_segment, split_s3_uri


def test_run_ids_become_safe_key_segments():
    assert run_segment("manual__2026-01-01T00:00:00+00:00") == "manual__2026-01-01T00_00_00_00_00"
    assert run_segment("///") == "run"


def test_keys_of_one_run_agree():
    layout = BucketLayout("deeplens-b")
    run = "manual__2026-01-01T00:00:00+00:00"
    assert layout.report_key(run, "summary.json") == "reports/manual__2026-01-01T00_00_00_00_00/summary.json"
    train, validation = layout.split_keys(run)
    assert train.rsplit("/", 1)[0] == validation.rsplit("/", 1)[0]
    assert layout.uri(layout.labels_key) == "s3://deeplens-b/manifests/labels.manifest"


def test_split_s3_uri():
    assert split_s3_uri("s3://b/k/x.jpg") == ("b", "k/x.jpg")
    for bad in ("b/k", "s3://b", "s3:///k"):
        with pytest.raises(ValueError, match="not an s3://bucket/key URI"):
            split_s3_uri(bad)
