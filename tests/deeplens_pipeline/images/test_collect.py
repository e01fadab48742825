"""Collect: merging shards, cross-shard duplicates, reports, the pre-labelled manifest, the verdict."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from deeplens_pipeline.images.collect import (
    ImagesUnusable,
    finish,
    merge_shard_results,
    rejects_csv,
    verdict,
    worst_rejects,
)
from deeplens_pipeline.images.preprocess import PreprocessOptions
from deeplens_pipeline.images.shard import ShardSettings, plan_shards, run_shard
from deeplens_pipeline.images.sources import list_source, parse_source

FAST = ShardSettings(options=PreprocessOptions(size=300), processes=1)


def image(source, pixels, status="processed", **extra):
    return {
        "key": f"input/{source}",
        "source": source,
        "sha256": "s" + source,
        "pixels": pixels,
        "status": status,
    } | extra


def reject(name, kind, size=0):
    return {"file": name, "kind": kind, "reason": f"{kind}: because", "size": size}


def test_cross_shard_duplicates_keep_the_image_already_in_s3():
    merged = merge_shard_results(
        [
            {"images": [image("a.jpg", "P1"), image("b.jpg", "P2")], "processed": 2, "uploaded": 2},
            {
                "images": [image("0.jpg", "P1"), image("c.jpg", "P2", status="unchanged")],
                "processed": 1,
                "uploaded": 1,
            },
        ]
    )
    assert [i["source"] for i in merged.images] == ["0.jpg", "c.jpg"]
    assert sorted(merged.remove) == ["input/a.jpg", "input/b.jpg"]
    assert {d["source"]: d["duplicate_of"] for d in merged.duplicates} == {"a.jpg": "0.jpg", "b.jpg": "c.jpg"}
    assert (merged.processed, merged.uploaded, merged.unchanged) == (3, 1, 1)


def test_merge_refuses_what_is_not_a_shard_result():
    with pytest.raises(TypeError, match="shard result must be a dict"):
        merge_shard_results(["oops"])


def test_worst_rejects_rank_by_kind_then_size():
    ranked = worst_rejects(
        [
            reject("e.jpg", "empty"),
            reject("big.png", "decompression-bomb", 9),
            reject("t.jpg", "truncated", 5),
            reject("t2.jpg", "truncated", 50),
        ]
    )
    assert [r["file"] for r in ranked] == ["big.png", "t2.jpg", "t.jpg", "e.jpg"]


def test_rejects_csv_has_file_and_reason():
    text = rejects_csv([reject("a, b.jpg", "empty")])
    assert list(csv.reader(io.StringIO(text))) == [["file", "reason"], ["a, b.jpg", "empty: because"]]


def test_verdict():
    ok = merge_shard_results([{"images": [image("a.jpg", "1")], "rejected": [reject("b.jpg", "empty")]}])
    assert verdict(ok, 0.5) is None
    assert "1 of 2 files rejected (50%), over max_reject_share=40%; worst: b.jpg (empty: because)" in verdict(
        ok, 0.4
    )
    nothing = merge_shard_results([{"rejected": [reject("b.jpg", "not-an-image")]}])
    assert verdict(nothing, 1.0).startswith(
        "no usable image is left: all 1 file(s) were rejected, worst: b.jpg"
    )
    assert verdict(merge_shard_results([]), 1.0) == "the source holds no images"


def run_folder(folder, s3, bucket, **plan_kwargs):
    root = parse_source(str(folder))
    specs = plan_shards(root, list_source(root), **plan_kwargs)
    return [run_shard(spec, bucket=bucket, client=s3, settings=FAST) for spec in specs]


def test_finish_writes_the_report_and_fails_naming_the_worst_files(photos, make, s3, bucket):
    folder = photos(2)
    make.bad_files(folder)
    results = run_folder(folder, s3, bucket)
    with pytest.raises(
        ImagesUnusable, match=r"6 of 8 files rejected \(75%\).*worst: bomb.png \(decompression-bomb"
    ):
        finish(results, client=s3, bucket=bucket, run_id="manual__1", size=300, max_reject_share=0.5)
    report = s3.get_object(Bucket=bucket, Key="reports/manual__1/rejects.csv")["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(report)))
    assert rows[0] == ["file", "reason"] and len(rows) == 7
    assert ["truncated.jpg", rows[-1][1]] in rows


def test_finish_summary_removes_cross_shard_duplicates_and_writes_the_manifest(photos, make, s3, bucket):
    folder = photos(3)
    shutil.copy(folder / "photo_00.jpg", folder / "zz.jpg")  # a copy, in another shard
    line = make.groundtruth_line("blue_box_1_000133.jpg")
    shutil.copy(make.PHOTOS / "blue_box_1_000133.jpg", folder / "blue_box_1_000133.jpg")
    from deeplens_pipeline.images.boxes import match_manifest, parse_manifest

    labels = match_manifest(parse_manifest(line, "gt.manifest"), [p.name for p in folder.iterdir()])
    results = run_folder(folder, s3, bucket, shard_size=2, labels=labels)
    assert len(results) == 3
    summary = finish(results, client=s3, bucket=bucket, run_id="r1", size=300, labels=["storage box"])
    assert [i["key"] for i in summary["images"]] == [
        "input/blue_box_1_000133.jpg",
        "input/photo_00.jpg",
        "input/photo_01.jpg",
        "input/photo_02.jpg",
    ]
    assert summary["images"][0] == {
        "key": "input/blue_box_1_000133.jpg",
        "source": "blue_box_1_000133.jpg",
        "sha256": results[0]["images"][0]["sha256"],
        "boxes_carried": 1,
        "labelled": True,
    }
    assert (summary["duplicates"], summary["rejected"], summary["uploaded"], summary["processed"]) == (
        1,
        0,
        4,
        5,
    )
    assert summary["rejects_report"] is None
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="input/")["Contents"]}
    assert "input/zz.jpg" not in keys and len(keys) == 4
    assert summary["prelabelled_manifest"] == f"s3://{bucket}/manifests/prelabelled.manifest"
    lines = (
        s3.get_object(Bucket=bucket, Key="manifests/prelabelled.manifest")["Body"]
        .read()
        .decode()
        .splitlines()
    )
    (record,) = [json.loads(x) for x in lines]
    assert record["source-ref"] == f"s3://{bucket}/input/blue_box_1_000133.jpg"
    (annotation,) = record["bounding-box"]["annotations"]
    s = 300 / 1920  # the real box 213,443 688x632 in a 1920x1080 photo, letterboxed to 300
    assert annotation["class_id"] == 0
    assert annotation["left"] == pytest.approx(213 * s, abs=1)
    assert annotation["top"] == pytest.approx(443 * s + 65, abs=1)
    assert annotation["width"] == pytest.approx(688 * s, abs=1)
    ledger = json.loads(s3.get_object(Bucket=bucket, Key="state/images-ledger.json")["Body"].read())
    assert ledger["entries"]["zz.jpg"]["status"] == "duplicate"
    # the rerun: the duplicate is remembered, nothing is uploaded, the summary is the same
    again = finish(
        run_folder(folder, s3, bucket, shard_size=2, labels=labels),
        client=s3,
        bucket=bucket,
        run_id="r2",
        size=300,
        labels=["storage box"],
    )
    assert (again["uploaded"], again["processed"], again["unchanged"], again["duplicates"]) == (0, 0, 4, 1)
    assert again["images"] == summary["images"]


def test_finish_notices_images_missing_from_s3(s3, bucket):
    with pytest.raises(RuntimeError, match=r"1 uploaded image\(s\) are not in"):
        finish([{"images": [image("ghost.jpg", "x")]}], client=s3, bucket=bucket)


def test_a_duplicate_whose_original_is_gone_is_processed_again(photos, s3, bucket, caplog):
    folder = photos(2)
    shutil.copy(folder / "photo_00.jpg", folder / "zz.jpg")
    first = finish(run_folder(folder, s3, bucket, shard_size=1), client=s3, bucket=bucket, size=300)
    assert first["duplicates"] == 1
    (folder / "photo_00.jpg").unlink()
    second = finish(run_folder(folder, s3, bucket, shard_size=1), client=s3, bucket=bucket, size=300)
    assert "its original photo_00.jpg is gone" in caplog.text
    assert second["duplicates"] == 1  # remembered once more, but no longer in the ledger
    third = finish(run_folder(folder, s3, bucket, shard_size=1), client=s3, bucket=bucket, size=300)
    assert third["duplicates"] == 0 and "input/zz.jpg" in [i["key"] for i in third["images"]]


def test_a_photo_deleted_from_the_source_is_archived_not_destroyed(photos, s3, bucket):
    folder = photos(3)
    finish(run_folder(folder, s3, bucket), client=s3, bucket=bucket, size=300, run_id="r1")
    (folder / "photo_01.jpg").unlink()
    summary = finish(run_folder(folder, s3, bucket), client=s3, bucket=bucket, size=300, run_id="r2")
    assert summary["archived"] == ["input/photo_01.jpg"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "input/photo_01.jpg" not in keys and "archive/r2/input/photo_01.jpg" in keys
    assert "input/photo_01.jpg" not in [i["key"] for i in summary["images"]]
    # A run whose source yields no image (unmounted, emptied by mistake) fails and archives nothing.
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(ImagesUnusable, match="no images"):
        finish(run_folder(folder, s3, bucket), client=s3, bucket=bucket, size=300, run_id="r3")
    assert "input/photo_00.jpg" in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]


def test_shard_lists_that_cannot_be_deleted_fail_nothing(photos, s3, bucket, caplog):
    from botocore.exceptions import ClientError

    from deeplens_pipeline.images.plan import store_specs, survey

    folder = photos(2)
    root = parse_source(str(folder))
    specs = plan_shards(root, list_source(root), shard_size=1, known=survey(s3, bucket, "input/", None))
    stored = store_specs(specs, s3, bucket, "state/plans/r1/")
    results = [run_shard(spec, bucket=bucket, client=s3, settings=FAST) for spec in stored]

    def denied(**_):
        error = {"Error": {"Code": "AccessDenied", "Message": "no s3:DeleteObject"}}
        raise ClientError(error, "DeleteObject")

    s3.meta.events.register("before-call.s3.DeleteObject", denied)
    summary = finish(results, client=s3, bucket=bucket, size=300)
    assert len(summary["images"]) == 2
    assert "could not delete the shards' photo lists under s3://" in caplog.text
    assert s3.list_objects_v2(Bucket=bucket, Prefix="state/plans/r1/")["KeyCount"] == 2
