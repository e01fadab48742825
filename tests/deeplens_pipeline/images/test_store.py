"""S3 side: metadata, look-ups, uploads with retries of partial failures, small text objects."""

from __future__ import annotations

from pathlib import Path

from botocore.exceptions import EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st

from deeplens_pipeline.images.store import (
    CONTENT_TYPE,
    Upload,
    decode_source,
    download_files,
    encode_source,
    head_metadata,
    list_keys,
    output_metadata,
    put_text_if_changed,
    sync_files,
    upload_files,
)


@given(st.text(min_size=1, max_size=80))
def test_source_metadata_round_trips_and_is_ascii(source):
    value = encode_source(source)
    assert value.isascii() and all(0x20 <= ord(c) < 0x7F for c in value)
    assert decode_source(value) == source


def test_plain_paths_are_stored_as_they_are():
    assert encode_source("sub dir/IMG_0001 (2).jpg") == "sub dir/IMG_0001 (2).jpg"
    assert encode_source("100%.jpg") == "100%25.jpg"


def files(tmp_path: Path, names: list[str]) -> list[Upload]:
    uploads = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(b"\xff\xd8 jpeg bytes of " + name.encode())
        uploads.append(Upload(path=path, key=f"input/{name}", metadata={"deeplens-source": name}))
    return uploads


def fail_puts(s3, keys: set[str], times: int | None) -> dict[str, int]:
    """Make PutObject of ``keys`` fail at the transport ``times`` times (None: always)."""
    failures: dict[str, int] = {}

    def handler(params, **_):
        key = params["Key"]
        if key in keys and (times is None or failures.get(key, 0) < times):
            failures[key] = failures.get(key, 0) + 1
            raise EndpointConnectionError(endpoint_url="http://injected-failure")

    s3.meta.events.register("before-parameter-build.s3.PutObject", handler)
    return failures


def test_upload_sets_content_type_and_metadata(tmp_path, s3, bucket):
    uploads = files(tmp_path, ["a.jpg", "b.jpg"])
    done = []
    report = upload_files(s3, bucket, uploads, max_concurrency=4, on_done=done.append)
    assert sorted(report.uploaded) == ["input/a.jpg", "input/b.jpg"] and report.failed == {}
    assert report.bytes == sum(u.path.stat().st_size for u in uploads) and len(done) == 2
    head = s3.head_object(Bucket=bucket, Key="input/a.jpg")
    assert head["ContentType"] == CONTENT_TYPE and head["Metadata"] == {"deeplens-source": "a.jpg"}
    assert head_metadata(s3, bucket, ["input/a.jpg", "input/none.jpg"]) == {
        "input/a.jpg": {"deeplens-source": "a.jpg"},
        "input/none.jpg": None,
    }


def test_partial_failures_are_retried_with_backoff(tmp_path, s3, bucket):
    uploads = files(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    failures = fail_puts(s3, {"input/b.jpg"}, times=2)
    pauses: list[float] = []
    report = upload_files(s3, bucket, uploads, rounds=3, backoff=1.0, sleep=pauses.append)
    assert failures == {"input/b.jpg": 2}
    assert sorted(report.uploaded) == ["input/a.jpg", "input/b.jpg", "input/c.jpg"] and report.failed == {}
    assert report.rounds == 2 and len(pauses) == 2
    assert 0.5 <= pauses[0] <= 1.5 and 1.0 <= pauses[1] <= 3.0
    assert set(list_keys(s3, bucket, "input/")) == {"input/a.jpg", "input/b.jpg", "input/c.jpg"}


def test_uploads_that_keep_failing_are_reported(tmp_path, s3, bucket):
    uploads = files(tmp_path, ["a.jpg", "b.jpg"])
    fail_puts(s3, {"input/a.jpg"}, times=None)
    report = upload_files(s3, bucket, uploads, rounds=2, sleep=lambda _: None)
    assert report.uploaded == ["input/b.jpg"]
    assert (
        list(report.failed) == ["input/a.jpg"] and "EndpointConnectionError" in report.failed["input/a.jpg"]
    )


def test_a_missing_bucket_fails_every_upload(tmp_path, s3):
    report = upload_files(s3, "deeplens-no-such-bucket", files(tmp_path, ["a.jpg"]), rounds=0)
    assert "NoSuchBucket" in report.failed["input/a.jpg"]


def test_downloads(tmp_path, s3, bucket):
    s3.put_object(Bucket=bucket, Key="src/a.jpg", Body=b"abc")
    errors = download_files(
        s3, bucket, [("src/a.jpg", tmp_path / "d" / "a.jpg"), ("src/no.jpg", tmp_path / "n.jpg")]
    )
    assert (tmp_path / "d" / "a.jpg").read_bytes() == b"abc"
    assert list(errors) == ["src/no.jpg"]


def test_small_text_is_written_only_when_it_changed(s3, bucket, calls):
    assert put_text_if_changed(s3, bucket, "manifests/x.manifest", "one\n") is True
    calls.reset()
    assert put_text_if_changed(s3, bucket, "manifests/x.manifest", "one\n") is False
    assert calls["PutObject"] == 0
    assert put_text_if_changed(s3, bucket, "manifests/x.manifest", "two\n") is True
    assert s3.get_object(Bucket=bucket, Key="manifests/x.manifest")["Body"].read() == b"two\n"


def test_output_metadata_names():
    meta = output_metadata(source="é.jpg", sha256="s", transform="{}", params="p", pixels="x")
    assert meta == {
        "deeplens-source": "%C3%A9.jpg",
        "deeplens-transform": "{}",
        "deeplens-sha256": "s",
        "deeplens-params": "p",
        "deeplens-pixels": "x",
    }


def test_sync_sends_only_what_differs_by_checksum(tmp_path, s3, bucket, calls):
    uploads = files(tmp_path, ["a.jpg", "b.jpg"])
    report, skipped = sync_files(s3, bucket, uploads)
    assert sorted(report.uploaded) == ["input/a.jpg", "input/b.jpg"] and skipped == []
    uploads[1].path.write_bytes(b"\xff\xd8 other bytes, same length!!")
    calls.reset()
    report, skipped = sync_files(s3, bucket, uploads)
    assert report.uploaded == ["input/b.jpg"] and skipped == ["input/a.jpg"]
    assert calls["ListObjectsV2"] == 1 and calls["HeadObject"] == 0 and calls["PutObject"] == 1


def test_sync_compares_multipart_objects_on_their_sha256(tmp_path, s3, bucket, calls):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"pretend this was large")
    for key, sha in [("input/same.jpg", "abc"), ("input/other.jpg", "old")]:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"deeplens-sha256": sha})[
            "UploadId"
        ]
        part = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=path.read_bytes()
        )
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
    assert "-" in s3.head_object(Bucket=bucket, Key="input/same.jpg")["ETag"]
    uploads = [
        Upload(path, "input/same.jpg", {"deeplens-sha256": "abc"}),
        Upload(path, "input/other.jpg", {"deeplens-sha256": "new"}),
    ]
    calls.reset()
    report, skipped = sync_files(s3, bucket, uploads)
    assert skipped == ["input/same.jpg"] and report.uploaded == ["input/other.jpg"]
    assert calls["HeadObject"] == 2
