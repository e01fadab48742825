"""Planning shards and running one against the emulator's S3: uploads, rejects, duplicates, reruns."""

from __future__ import annotations

import json
import shutil

import pytest
from botocore.exceptions import EndpointConnectionError
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from deeplens_pipeline.images import shard as shard_mod
from deeplens_pipeline.images.collect import finish
from deeplens_pipeline.images.geometry import Transform
from deeplens_pipeline.images.plan import store_specs, survey
from deeplens_pipeline.images.preprocess import PreprocessOptions, sha256_file
from deeplens_pipeline.images.rejects import DecodeLimits
from deeplens_pipeline.images.shard import ShardFailed, ShardSettings, plan_shards, run_shard
from deeplens_pipeline.images.sources import list_source, parse_source

FAST = ShardSettings(options=PreprocessOptions(size=300), processes=1, backoff=0.01)


def plan(folder, **kwargs):
    root = parse_source(str(folder))
    return plan_shards(root, list_source(root), **kwargs)


def resolved_plan(folder, s3, bucket, client=None, **kwargs):
    """The plan as the DAG and the command line make it: the bucket surveyed once for all shards."""
    root = parse_source(str(folder))
    known = survey(s3, bucket, "input/", "state/images-ledger.json")
    return plan_shards(root, list_source(root, client), known=known, **kwargs)


def run_all(specs, s3, bucket, settings=FAST):
    return [run_shard(spec, bucket=bucket, client=s3, settings=settings) for spec in specs]


def finish_run(results, s3, bucket, **kwargs):
    return finish(results, client=s3, bucket=bucket, size=300, max_reject_share=1.0, **kwargs)


# ---------------------------------------------------------------- running


def test_shard_uploads_good_images_with_metadata_and_reports_bad_ones(photos, make, s3, bucket):
    folder = photos(3)
    expected = make.bad_files(folder)
    (result,) = run_all(plan(folder), s3, bucket)
    assert [i["key"] for i in result["images"]] == [f"input/photo_0{i}.jpg" for i in range(3)]
    assert {r["file"]: r["kind"] for r in result["rejected"]} == expected
    assert (result["processed"], result["unchanged"], result["uploaded"]) == (3, 0, 3)
    head = s3.head_object(Bucket=bucket, Key="input/photo_01.jpg")
    meta = head["Metadata"]
    assert head["ContentType"] == "image/jpeg"
    assert meta["deeplens-source"] == "photo_01.jpg"
    assert meta["deeplens-sha256"] == sha256_file(folder / "photo_01.jpg")
    t = Transform.from_metadata(meta["deeplens-transform"])
    assert (t.w, t.h, t.orientation, t.size, t.dx, t.dy) == (640, 480, 1, 300, 0.0, 37.0)
    assert json.loads(meta["deeplens-transform"]) == result["images"][1]["transform"]
    body = s3.get_object(Bucket=bucket, Key="input/photo_01.jpg")["Body"]
    with Image.open(body) as im:
        assert im.size == (300, 300) and im.format == "JPEG"


def test_rerun_decodes_nothing_and_uploads_nothing(photos, make, s3, bucket, calls, monkeypatch):
    folder = photos(3)
    make.bad_files(folder)
    first = run_all(plan(folder), s3, bucket)
    finish_run(first, s3, bucket)  # writes the ledger of rejects

    def no_decoding(*args, **kwargs):
        raise AssertionError("a rerun must not decode anything")

    monkeypatch.setattr(shard_mod, "preprocess_file", no_decoding)
    calls.reset()
    (again,) = run_all(plan(folder), s3, bucket)
    assert (again["processed"], again["unchanged"], again["uploaded"], again["uploaded_bytes"]) == (
        0,
        3,
        0,
        0,
    )
    assert calls["PutObject"] == 0 and calls["CreateMultipartUpload"] == 0
    # the ledger (1 GET) and one listing answer everything: no per-file request at all
    assert calls.counts == {"GetObject": 1, "ListObjectsV2": 1}
    assert [r["file"] for r in again["rejected"]] == [r["file"] for r in first[0]["rejected"]]
    assert [i["key"] for i in again["images"]] == [i["key"] for i in first[0]["images"]]


def test_a_resolved_rerun_costs_the_same_few_requests_whatever_the_shards(photos, s3, bucket, calls):
    """Before, every shard listed the whole output prefix and read the whole ledger (shards x keys);
    now the plan does both once and a shard of unchanged photos sends no request at all."""
    folder = photos(6)
    first = run_all(resolved_plan(folder, s3, bucket, shard_size=2), s3, bucket)
    finish_run(first, s3, bucket)
    calls.reset()
    specs = resolved_plan(folder, s3, bucket, shard_size=2)
    assert len(specs) == 3 and calls.counts == {"ListObjectsV2": 1, "GetObject": 1}  # the survey
    assert {i["source"]: bool(i["output"]) for s in specs for i in s["items"]} == dict.fromkeys(
        [f"photo_{n:02d}.jpg" for n in range(6)], True
    )
    calls.reset()
    again = run_all(specs, s3, bucket)
    assert calls.counts == {}  # 3 shards, not one request
    assert [(r["processed"], r["unchanged"], r["uploaded"]) for r in again] == [(0, 2, 0)] * 3
    assert [i["pixels"] for r in again for i in r["images"]] == [
        i["pixels"] for r in first for i in r["images"]
    ]


def test_a_resolved_shard_heads_only_objects_the_ledger_cannot_vouch_for(photos, make, s3, bucket, calls):
    folder = photos(3)
    finish_run(run_all(resolved_plan(folder, s3, bucket), s3, bucket), s3, bucket)
    s3.put_object(Bucket=bucket, Key="input/photo_01.jpg", Body=b"someone else's bytes")
    make.write_jpeg(folder / "photo_02.jpg", make.scene((500, 500), seed=9))  # a changed photo
    make.write_jpeg(folder / "photo_03.jpg", make.scene((400, 300), seed=11))  # a new photo
    specs = resolved_plan(folder, s3, bucket)
    outputs = {i["source"]: i["output"] for i in specs[0]["items"]}
    assert outputs["photo_01.jpg"] == "head" and outputs["photo_03.jpg"] is None
    assert outputs["photo_00.jpg"]["deeplens-sha256"] == sha256_file(folder / "photo_00.jpg")
    calls.reset()
    (again,) = run_all(specs, s3, bucket)
    assert calls["HeadObject"] == 1 and calls["ListObjectsV2"] == 0 and calls["GetObject"] == 0
    assert (again["processed"], again["unchanged"], again["uploaded"]) == (3, 1, 3)


def test_shard_lists_written_to_s3_are_read_back_by_the_shard(photos, s3, bucket):
    folder = photos(3)
    specs = resolved_plan(folder, s3, bucket, shard_size=2)
    stored = store_specs(specs, s3, bucket, "state/plans/run_1/")
    assert [s["items_key"] for s in stored] == [
        "state/plans/run_1/shard-00000.json",
        "state/plans/run_1/shard-00001.json",
    ]
    assert all("items" not in s for s in stored) and [s["photos"] for s in stored] == [2, 1]
    assert len(json.dumps(stored)) < 600  # the XCom: keys, not photo lists
    results = run_all(stored, s3, bucket)
    assert [len(r["images"]) for r in results] == [2, 1]
    assert [r["plan_key"] for r in results] == [s["items_key"] for s in stored]
    finish_run(results, s3, bucket)  # done with the lists: collect deletes them
    assert s3.list_objects_v2(Bucket=bucket, Prefix="state/plans/")["KeyCount"] == 0
    with pytest.raises(ValueError, match="photo list .* is gone .* clear the images group"):
        run_shard(stored[0], bucket=bucket, client=s3, settings=FAST)


def test_readme_and_license_beside_the_photos_are_not_rejects(photos, s3, bucket):
    """Before, a file without an extension was an image candidate: README and LICENSE became two
    not-an-image rejects and counted against max_reject_share."""
    folder = photos(2)
    (folder / "README").write_text("photos of the lab, March\n")
    (folder / "LICENSE").write_text("CC BY 4.0\n")
    (result,) = run_all(plan(folder), s3, bucket)
    assert result["rejected"] == [] and len(result["images"]) == 2


def test_a_link_out_of_the_source_folder_is_refused_and_never_read(photos, tmp_path, s3, bucket, calls):
    """Before, the photo a link pointed to anywhere on the worker was decoded and uploaded."""
    folder = photos(2)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(folder / "photo_00.jpg", outside / "private.jpg")
    (folder / "zz_link.jpg").symlink_to(outside / "private.jpg")
    specs = plan(folder)
    (folder / "photo_01.jpg").unlink()  # swapped for a link after the plan: refused by the shard
    (folder / "photo_01.jpg").symlink_to(outside / "private.jpg")
    (result,) = run_all(specs, s3, bucket)
    reasons = {r["file"]: r["reason"] for r in result["rejected"]}
    assert set(reasons) == {"photo_01.jpg", "zz_link.jpg"}
    assert all(r["kind"] == "outside-source" for r in result["rejected"])
    assert reasons["zz_link.jpg"].startswith("outside-source: a symbolic link that leads out of the source")
    assert str((outside / "private.jpg").resolve()) in reasons["zz_link.jpg"]
    assert [i["source"] for i in result["images"]] == ["photo_00.jpg"] and result["uploaded"] == 1


def test_a_raised_memory_limit_retries_the_refused_files_only(photos, make, s3, bucket):
    folder = photos(2)
    make.scene((3000, 2000)).save(folder / "scan.png", compress_level=1)  # ~39 MiB to decode
    tight = ShardSettings(
        options=PreprocessOptions(size=300, limits=DecodeLimits(memory_mb=32)), processes=1, backoff=0.01
    )
    (first,) = run_all(resolved_plan(folder, s3, bucket), s3, bucket, tight)
    assert [(r["file"], r["kind"]) for r in first["rejected"]] == [("scan.png", "decompression-bomb")]
    finish_run([first], s3, bucket)
    (same,) = run_all(resolved_plan(folder, s3, bucket), s3, bucket, tight)
    assert same["processed"] == 0 and [r["file"] for r in same["rejected"]] == ["scan.png"]
    roomier = ShardSettings(
        options=PreprocessOptions(size=300, limits=DecodeLimits(memory_mb=64)), processes=1, backoff=0.01
    )
    (raised,) = run_all(resolved_plan(folder, s3, bucket), s3, bucket, roomier)
    assert raised["rejected"] == [] and (raised["processed"], raised["unchanged"]) == (1, 2)


def test_a_first_run_sends_no_lookups_and_a_tampered_output_is_redone(photos, s3, bucket, calls):
    folder = photos(2)
    run_all(plan(folder), s3, bucket)
    assert calls["HeadObject"] == 0  # the listing showed an empty prefix
    finish_run(run_all(plan(folder), s3, bucket), s3, bucket)
    s3.put_object(Bucket=bucket, Key="input/photo_01.jpg", Body=b"someone else's bytes")
    calls.reset()
    (again,) = run_all(plan(folder), s3, bucket)
    assert calls["HeadObject"] == 1  # the ETag no longer matches the ledger: read the object itself
    assert (again["processed"], again["unchanged"], again["uploaded"]) == (1, 1, 1)


def test_only_changed_photos_are_redone_and_new_options_redo_everything(photos, make, s3, bucket):
    folder = photos(3)
    run_all(plan(folder), s3, bucket)
    make.write_jpeg(folder / "photo_02.jpg", make.scene((500, 500), seed=9))
    (changed,) = run_all(plan(folder), s3, bucket)
    assert (changed["processed"], changed["unchanged"], changed["uploaded"]) == (1, 2, 1)
    t = Transform.from_metadata(
        s3.head_object(Bucket=bucket, Key="input/photo_02.jpg")["Metadata"]["deeplens-transform"]
    )
    assert (t.w, t.h) == (500, 500)
    other = ShardSettings(options=PreprocessOptions(size=300, quality=70), processes=1)
    (redone,) = run_all(plan(folder), s3, bucket, other)
    assert (redone["processed"], redone["uploaded"]) == (3, 3)


def test_identical_photos_are_processed_and_uploaded_once(photos, make, s3, bucket):
    folder = photos(2)
    shutil.copy(folder / "photo_00.jpg", folder / "zz_copy.jpg")  # same bytes
    im = make.scene((400, 300), seed=7)
    im.save(folder / "p1.png", compress_level=1)
    info = PngInfo()
    info.add_text("Software", "an editor that only touched the metadata")
    im.save(folder / "p2.png", compress_level=9, pnginfo=info)  # same pixels, other bytes
    (result,) = run_all(plan(folder), s3, bucket)
    assert [i["source"] for i in result["images"]] == ["p1.png", "photo_00.jpg", "photo_01.jpg"]
    assert {d["source"]: d["duplicate_of"] for d in result["duplicates"]} == {
        "p2.png": "p1.png",
        "zz_copy.jpg": "photo_00.jpg",
    }
    assert result["processed"] == 4  # the byte-identical copy was not even decoded
    assert result["uploaded"] == 3
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="input/")["Contents"]}
    assert keys == {"input/p1.jpg", "input/photo_00.jpg", "input/photo_01.jpg"}


def test_copies_of_a_rejected_file_are_rejected_too(tmp_path, s3, bucket):
    (tmp_path / "a.jpg").write_text("not a photo")
    (tmp_path / "b.jpg").write_text("not a photo")
    (result,) = run_all(plan(tmp_path), s3, bucket)
    assert [(r["file"], r["kind"]) for r in result["rejected"]] == [
        ("a.jpg", "not-an-image"),
        ("b.jpg", "not-an-image"),
    ]
    assert "(same bytes as a.jpg)" in result["rejected"][1]["reason"]


def test_s3_source_is_not_downloaded_again_on_rerun(photos, s3, bucket, calls):
    folder = photos(2)
    (folder / "photo_00.xml").write_text(
        "<annotation><object><name>box</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>64</xmax><ymax>48</ymax>"
        "</bndbox></object></annotation>"
    )
    for path in sorted(folder.iterdir()):
        s3.upload_file(str(path), bucket, f"camera/{path.name}")
    (first,) = run_all(
        plan_shards(
            parse_source(f"s3://{bucket}/camera/"), list_source(parse_source(f"s3://{bucket}/camera/"), s3)
        ),
        s3,
        bucket,
    )
    assert [i["source"] for i in first["images"]] == ["camera/photo_00.jpg", "camera/photo_01.jpg"]
    assert first["images"][0]["boxes_carried"] == 1  # its VOC sidecar, read from S3
    assert calls["HeadObject"] == 0  # the listing gave each download its size: one GET a photo
    meta = s3.head_object(Bucket=bucket, Key="input/photo_00.jpg")["Metadata"]
    assert meta["deeplens-source"] == "camera/photo_00.jpg" and meta["deeplens-source-etag"]
    calls.reset()
    root = parse_source(f"s3://{bucket}/camera/")
    (again,) = run_all(plan_shards(root, list_source(root, s3)), s3, bucket)
    assert again["unchanged"] == 2 and again["uploaded"] == 0
    assert calls["GetObject"] == 2  # the ledger and the VOC sidecar; no photo was downloaded


def test_pascal_voc_beside_a_photo_is_carried(photos, s3, bucket):
    folder = photos(1)
    (folder / "photo_00.xml").write_text(
        "<annotation><size><width>640</width><height>480</height></size>"
        "<object><name>box</name><bndbox><xmin>65</xmin><ymin>49</ymin><xmax>320</xmax><ymax>240</ymax></bndbox>"
        "</object></annotation>"
    )
    (result,) = run_all(plan(folder), s3, bucket)
    (image,) = result["images"]
    assert image["labelled"] and image["boxes_carried"] == 1
    box = image["boxes"][0]
    assert (box["left"], box["top"], box["width"], box["height"], box["label"]) == (30, 60, 120, 90, "box")


def test_broken_voc_keeps_the_image_with_a_note(photos, s3, bucket):
    folder = photos(1)
    (folder / "photo_00.xml").write_text("<annotation><object>")
    (result,) = run_all(plan(folder), s3, bucket)
    (image,) = result["images"]
    assert not image["labelled"] and any("photo_00.xml: not well-formed" in n for n in image["notes"])


def test_failed_uploads_fail_the_shard_and_a_retry_finishes_it(photos, s3, bucket):
    folder = photos(3)

    def fail(params, **_):
        if params["Key"] == "input/photo_01.jpg":
            raise EndpointConnectionError(endpoint_url="http://injected-failure")

    s3.meta.events.register("before-parameter-build.s3.PutObject", fail)
    settings = ShardSettings(options=PreprocessOptions(size=300), processes=1, upload_rounds=1, backoff=0.01)
    with pytest.raises(ShardFailed, match="1 upload\\(s\\) failed .* input/photo_01.jpg") as caught:
        run_all(plan(folder), s3, bucket, settings)
    assert [i["key"] for i in caught.value.result["images"]] == ["input/photo_00.jpg", "input/photo_02.jpg"]
    s3.meta.events.unregister("before-parameter-build.s3.PutObject", fail)
    (retry,) = run_all(plan(folder), s3, bucket)
    assert (retry["processed"], retry["unchanged"], retry["uploaded"]) == (1, 2, 1)


def test_a_process_pool_gives_the_same_result(photos, make, s3, bucket):
    folder = photos(4)
    (folder / "bad.jpg").write_bytes(b"")
    pooled = ShardSettings(options=PreprocessOptions(size=300), processes=2)
    (result,) = run_all(plan(folder), s3, bucket, pooled)
    outcomes = shard_mod.preprocess_many(
        [
            (p.name, str(p), str(folder.parent / "inline" / p.name))
            for p in sorted(folder.glob("photo_*.jpg"))
        ],
        PreprocessOptions(size=300),
        processes=1,
    )
    assert [i["pixels"] for i in result["images"]] == [outcomes[n]["pixels"] for n in sorted(outcomes)]
    assert [r["kind"] for r in result["rejected"]] == ["empty"]


def test_empty_shard(s3, bucket, tmp_path):
    result = run_shard({"index": 0, "source": str(tmp_path), "items": []}, bucket=bucket, client=s3)
    assert result["images"] == [] and result["uploaded"] == 0


# ---------------------------------------------------------------- a decoder that kills its worker

CRASHY = '''
import os
from deeplens_pipeline.images import preprocess

def work(job):
    """preprocess.work, except that a file named ``crash*`` (or any file, when ALWAYS) kills the worker."""
    if ALWAYS or os.path.basename(job[0]).startswith("crash"):
        os._exit(1)
    return preprocess.work(job)
'''


@pytest.fixture
def crashy(tmp_path, monkeypatch):
    """Install a worker function that dies like a segfaulting decoder (spawned workers import it by
    name from ``sys.path``, which they inherit)."""

    def install(always: bool = False):
        name = f"crashy_worker_{'always' if always else 'one'}"
        (tmp_path / f"{name}.py").write_text(f"ALWAYS = {always}\n" + CRASHY)
        monkeypatch.syspath_prepend(str(tmp_path))
        module = __import__(name)
        monkeypatch.setattr(shard_mod, "work", module.work)

    return install


def test_a_worker_crash_rejects_only_the_file_that_caused_it(photos, crashy):
    folder = photos(4)
    shutil.copy(folder / "photo_00.jpg", folder / "crash.jpg")
    crashy()
    jobs = [(p.name, str(p), str(folder.parent / "out" / p.name)) for p in sorted(folder.glob("*.jpg"))]
    outcomes = shard_mod.preprocess_many(jobs, PreprocessOptions(size=300), processes=2)
    assert outcomes["crash.jpg"]["status"] == "rejected"
    assert outcomes["crash.jpg"]["reason"] == "unreadable: the decoder process died (BrokenProcessPool)"
    assert {n: o["status"] for n, o in outcomes.items() if n != "crash.jpg"} == dict.fromkeys(
        [f"photo_{i:02d}.jpg" for i in range(4)], "ok"
    )


def test_workers_that_cannot_run_fail_the_shard_instead_of_rejecting_every_file(photos, crashy):
    folder = photos(3)
    crashy(always=True)
    jobs = [(p.name, str(p), str(folder.parent / "out" / p.name)) for p in sorted(folder.glob("*.jpg"))]
    with pytest.raises(RuntimeError, match="worker processes die before finishing any file"):
        shard_mod.preprocess_many(jobs, PreprocessOptions(size=300), processes=2)
