"""The ledger of sources that left no output (rejects, duplicates)."""

from __future__ import annotations

from deeplens_pipeline.images import ledger


def test_missing_or_foreign_ledgers_are_empty(s3, bucket):
    assert ledger.load(s3, bucket, "state/images-ledger.json") == {}
    s3.put_object(Bucket=bucket, Key="state/images-ledger.json", Body=b"not json")
    assert ledger.load(s3, bucket, "state/images-ledger.json") == {}
    s3.put_object(
        Bucket=bucket, Key="state/images-ledger.json", Body=b'{"version": 99, "entries": {"a": {}}}'
    )
    assert ledger.load(s3, bucket, "state/images-ledger.json") == {}


def test_entries_round_trip_and_are_written_once(s3, bucket, calls):
    rejected = [
        {"file": "bad.jpg", "kind": "truncated", "reason": "truncated: x", "sha256": "aa", "size": 3},
        {"file": "gone.jpg", "kind": "unreadable", "reason": "unreadable: y", "size": 0},  # no checksum
    ]
    duplicates = [{"source": "copy.jpg", "duplicate_of": "a.jpg", "sha256": "bb", "etag": "e1"}]
    entries = ledger.entries_from(rejected, duplicates, "fp")
    assert set(entries) == {"bad.jpg", "copy.jpg"}
    assert entries["copy.jpg"] == {
        "status": "duplicate",
        "duplicate_of": "a.jpg",
        "sha256": "bb",
        "etag": "e1",
        "params": "fp",
    }
    assert ledger.save(s3, bucket, "state/l.json", entries) is True
    assert ledger.load(s3, bucket, "state/l.json") == entries
    calls.reset()
    assert ledger.save(s3, bucket, "state/l.json", entries) is False
    assert calls["PutObject"] == 0
