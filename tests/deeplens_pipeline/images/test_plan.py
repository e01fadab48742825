"""Planning shards: deterministic, JSON-serialisable, keys resolved over the whole listing."""

from __future__ import annotations

import json

import pytest

from deeplens_pipeline.images.boxes import LabelSet
from deeplens_pipeline.images.plan import plan_shards
from deeplens_pipeline.images.sources import list_source, parse_source


def plan(folder, **kwargs):
    root = parse_source(str(folder))
    return plan_shards(root, list_source(root), **kwargs)


def test_plan_is_deterministic_json_with_keys_and_labels(tmp_path, make):
    for name in ["a/x.jpg", "b/x.jpg", "c.jpg", "d.jpg", "e.png"]:
        make.write_jpeg(tmp_path / name)
    root = parse_source(str(tmp_path))
    labels = {"c.jpg": LabelSet("m:1", (), (640, 480))}
    specs = plan_shards(root, list_source(root), input_prefix="input", shard_size=2, labels=labels)
    assert json.loads(json.dumps(specs)) == specs
    assert [s["index"] for s in specs] == [0, 1, 2] and {s["count"] for s in specs} == {3}
    items = [i for s in specs for i in s["items"]]
    assert [i["source"] for i in items] == ["a/x.jpg", "b/x.jpg", "c.jpg", "d.jpg", "e.png"]
    keys = [i["key"] for i in items]
    assert keys[2:] == ["input/c.jpg", "input/d.jpg", "input/e.jpg"]
    assert keys[0].startswith("input/x--") and keys[0] != keys[1]
    assert items[2]["labels"] == labels["c.jpg"].to_dict()
    assert plan_shards(root, list_source(root), input_prefix="input", shard_size=2, labels=labels) == specs


def test_shard_size_grows_to_respect_max_shards(tmp_path, make):
    for i in range(5):
        make.write_jpeg(tmp_path / f"{i}.jpg")
    specs = plan(tmp_path, shard_size=1, max_shards=2)
    assert [len(s["items"]) for s in specs] == [3, 2]
    with pytest.raises(ValueError, match="positive"):
        plan(tmp_path, shard_size=0)


def test_an_empty_listing_plans_no_shard(tmp_path):
    assert plan(tmp_path) == []


def test_a_resolved_plan_tells_each_photo_what_the_bucket_holds(tmp_path, make):
    from deeplens_pipeline.images.plan import Known
    from deeplens_pipeline.images.store import Listed

    for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]:
        make.write_jpeg(tmp_path / name)
    uploaded = {
        "status": "uploaded",
        "key": "input/a.jpg",
        "sha256": "s" * 64,
        "params": "p" * 16,
        "output_etag": "e1",
        "transform": '{"w":640}',
        "pixels": "x" * 64,
    }
    rejected = {"status": "rejected", "kind": "empty", "reason": "empty: no bytes", "sha256": "0" * 64}
    known = Known(
        outputs={"input/a.jpg": Listed(10, "e1"), "input/b.jpg": Listed(10, "other")},
        ledger={"a.jpg": uploaded, "b.jpg": dict(uploaded, key="input/b.jpg"), "d.jpg": rejected},
    )
    root = parse_source(str(tmp_path))
    (spec,) = plan_shards(root, list_source(root), known=known)
    assert spec["resolved"] is True
    items = {i["source"]: i for i in spec["items"]}
    assert items["a.jpg"]["output"] == {
        "deeplens-sha256": "s" * 64,
        "deeplens-params": "p" * 16,
        "deeplens-transform": '{"w":640}',
        "deeplens-pixels": "x" * 64,
    }
    assert items["b.jpg"]["output"] == "head"  # listed with another ETag than the ledger's
    assert items["c.jpg"]["output"] is None and "seen" not in items["c.jpg"]
    assert items["d.jpg"]["seen"] == rejected
    assert json.loads(json.dumps(spec)) == spec
