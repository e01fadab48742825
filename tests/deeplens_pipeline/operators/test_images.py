"""The images task group against the emulator's S3: operators one by one, then the mapped group in a
real DAG run (``dag.test``) with its Params passed through Jinja templates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from PIL import Image, ImageDraw

from deeplens_pipeline.airflow_compat import AirflowFailException
from deeplens_pipeline.operators.images import (
    CollectImagesOperator,
    PlanImageShardsOperator,
    PreprocessUploadOperator,
    as_int,
    as_optional_int,
    as_str_list,
    s3_client,
)
from tests.conftest import PIPELINE_ACCESS_KEY

CONN_ID = "aws_images_test"
PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "photos"
GROUNDTRUTH = Path(__file__).resolve().parents[2] / "fixtures" / "groundtruth"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def conn(moto_endpoint, monkeypatch):
    """An Airflow AWS connection (from an environment variable) pointing at the emulator."""
    extra = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": PIPELINE_ACCESS_KEY, "password": "testing", "extra": extra}),
    )
    return CONN_ID


@pytest.fixture
def s3(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3):
    name = f"deeplens-op-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def photo(path: Path, seed: int, size=(640, 480)) -> Path:
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    ImageDraw.Draw(im).rectangle((seed * 40, 50, seed * 40 + 120, 200), fill=(200, 40 * seed % 255, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=90)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    for i in range(3):
        photo(root / f"p{i}.jpg", i + 1)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    shutil.copy(PHOTOS / "blue_box_1_000133.jpg", root / "blue_box_1_000133.jpg")
    return root


@pytest.fixture
def manifest(tmp_path):
    lines = [
        line
        for path in sorted(GROUNDTRUTH.glob("*.manifest"))
        for line in path.read_text().splitlines()
        if "/blue_box_1_000133.jpg" in line
    ]
    path = tmp_path / "existing.manifest"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- rendered values


def test_rendered_values_are_coerced_and_errors_name_the_parameter():
    assert as_int("image_shape", " 512 ") == 512
    assert as_optional_int("processes", "None") is None and as_optional_int("processes", "3") == 3
    assert as_str_list("classes", '["a", "b"]') == ["a", "b"]
    assert as_str_list("classes", "['a', 'b']") == ["a", "b"]
    assert as_str_list("classes", "a, b") == ["a", "b"]
    assert as_str_list("classes", "") is None and as_str_list("classes", None) is None
    with pytest.raises(AirflowFailException, match="quality must be an integer, got 'high'"):
        as_int("quality", "high")
    with pytest.raises(AirflowFailException, match="shard_size must be between 1 and None, got 0"):
        as_int("shard_size", "0", 1)
    with pytest.raises(AirflowFailException, match="classes must be a list of strings"):
        as_str_list("classes", [1, 2])


def test_the_client_comes_from_the_connection_with_retries(conn, moto_endpoint, monkeypatch):
    client = s3_client(conn, max_pool=30)
    assert client.meta.endpoint_url == moto_endpoint
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.config.max_pool_connections == 32
    extra = {
        "endpoint_url": moto_endpoint,
        "config_kwargs": {"retries": {"mode": "adaptive", "max_attempts": 3}},
    }
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": PIPELINE_ACCESS_KEY, "password": "testing", "extra": extra}),
    )
    assert s3_client(conn).meta.config.retries["mode"] == "adaptive"  # the connection's settings win


# ---------------------------------------------------------------- operators one by one


def run_group(conn, bucket, folder, manifest=None, **collect_kwargs):
    specs = PlanImageShardsOperator(
        task_id="plan",
        source=str(folder),
        bucket=bucket,
        aws_conn_id=conn,
        shard_size="2",
        manifest=str(manifest) if manifest else None,
    ).execute({})
    results = [
        PreprocessUploadOperator(
            task_id="pu",
            shard=spec,
            bucket=bucket,
            aws_conn_id=conn,
            image_shape="300",
            processes="1",
            pad_color="#808080",
            quality="85",
        ).execute({})
        for spec in specs
    ]
    collect = CollectImagesOperator(
        task_id="collect",
        results=results,
        source=str(folder),
        bucket=bucket,
        aws_conn_id=conn,
        image_shape="300",
        **collect_kwargs,
    )
    return specs, results, collect.execute({"run_id": "manual__test"})


def test_plan_preprocess_collect(conn, bucket, folder, manifest, s3):
    specs, _, summary = run_group(
        conn, bucket, folder, manifest, max_reject_share="0.5", classes='["storage box"]'
    )
    assert len(specs) == 3 and json.loads(json.dumps(specs)) == specs
    # the XCom names each shard's photo list in S3; the lists are gone once collect is done
    assert [s["items_key"] for s in specs] == [f"state/plans/manual/shard-{i:05d}.json" for i in range(3)]
    assert all("items" not in s for s in specs) and sum(s["photos"] for s in specs) == 5
    assert s3.list_objects_v2(Bucket=bucket, Prefix="state/plans/")["KeyCount"] == 0
    assert [i["key"] for i in summary["images"]] == [
        "input/blue_box_1_000133.jpg",
        "input/p0.jpg",
        "input/p1.jpg",
        "input/p2.jpg",
    ]
    assert summary["images"][0]["boxes_carried"] == 1 and summary["images"][0]["labelled"]
    assert (summary["processed"], summary["uploaded"], summary["rejected"], summary["duplicates"]) == (
        4,
        4,
        1,
        0,
    )
    assert summary["rejects_report"] == f"s3://{bucket}/reports/manual__test/rejects.csv"
    report = s3.get_object(Bucket=bucket, Key="reports/manual__test/rejects.csv")["Body"].read().decode()
    assert report.splitlines()[1].startswith("broken.jpg,")
    head = s3.head_object(Bucket=bucket, Key="input/p1.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert set(head["Metadata"]) >= {"deeplens-source", "deeplens-transform", "deeplens-sha256"}
    line = json.loads(s3.get_object(Bucket=bucket, Key="manifests/prelabelled.manifest")["Body"].read())
    assert line["source-ref"] == f"s3://{bucket}/input/blue_box_1_000133.jpg"
    assert line["bounding-box-metadata"]["class-map"] == {"0": "storage box"}
    # the same photos again: nothing decoded, nothing uploaded
    _, _, again = run_group(conn, bucket, folder, manifest, max_reject_share="0.5", classes='["storage box"]')
    assert (again["processed"], again["uploaded"], again["unchanged"]) == (0, 0, 4)


def test_too_many_rejects_fail_naming_the_files(conn, bucket, tmp_path):
    photo(tmp_path / "ok.jpg", 1)
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.png").write_text("text")
    with pytest.raises(
        AirflowFailException, match=r"2 of 3 files rejected.*b.png \(not-an-image.*a.jpg \(empty"
    ):
        run_group(conn, bucket, tmp_path, max_reject_share="0.2")


def test_plan_refuses_bad_buckets_and_overlapping_sources(conn, bucket):
    with pytest.raises(AirflowFailException, match="bucket must begin with 'deeplens-'"):
        PlanImageShardsOperator(task_id="p", source="/tmp", bucket="photos", aws_conn_id=conn).execute({})
    with pytest.raises(AirflowFailException, match="overlaps the output prefix"):
        PlanImageShardsOperator(
            task_id="p", source=f"s3://{bucket}/input/raw/", bucket=bucket, aws_conn_id=conn
        ).execute({})
    with pytest.raises(AirflowFailException, match="image_source: .* is not an existing folder"):
        PlanImageShardsOperator(
            task_id="p", source="/no/such/folder", bucket=bucket, aws_conn_id=conn
        ).execute({})


def test_preprocess_refuses_bad_options(conn, bucket, tmp_path):
    spec = {"index": 0, "count": 1, "source": str(tmp_path), "items": []}
    with pytest.raises(AirflowFailException, match=r"image_shape must be one of \(300, 480, 512\), got 333"):
        PreprocessUploadOperator(
            task_id="u", shard=spec, bucket=bucket, aws_conn_id=conn, image_shape="333"
        ).execute({})
    with pytest.raises(AirflowFailException, match="pad colour"):
        PreprocessUploadOperator(
            task_id="u", shard=spec, bucket=bucket, aws_conn_id=conn, pad_color="mauvish"
        ).execute({})
    with pytest.raises(AirflowFailException, match="shard must be a shard spec"):
        PreprocessUploadOperator(task_id="u", shard="[1]", bucket=bucket, aws_conn_id=conn).execute({})


def test_the_decode_memory_limit_reaches_the_decoder(conn, bucket, tmp_path):
    Image.linear_gradient("L").resize((3000, 2000)).convert("RGB").save(tmp_path / "scan.png")
    photo(tmp_path / "ok.jpg", 1)
    (spec,) = PlanImageShardsOperator(
        task_id="p", source=str(tmp_path), bucket=bucket, aws_conn_id=conn
    ).execute({"run_id": "r1"})
    common = {"task_id": "u", "shard": spec, "bucket": bucket, "aws_conn_id": conn, "processes": "1"}
    result = PreprocessUploadOperator(**common, decode_memory_mb="32").execute({})
    assert [r["file"] for r in result["rejected"]] == ["scan.png"]
    assert "would need 39 MiB" in result["rejected"][0]["reason"]
    assert "limit of 32 MiB (decode_memory_mb)" in result["rejected"][0]["reason"]
    assert PreprocessUploadOperator(**common).execute({})["rejected"] == []  # 512 MiB by default
    with pytest.raises(AirflowFailException, match="decode_memory_mb must be between 16 and 65536"):
        PreprocessUploadOperator(**common, decode_memory_mb="8").execute({})


def test_no_source_reports_what_the_input_prefix_holds(conn, bucket, folder, s3):
    run_group(conn, bucket, folder, max_reject_share="0.5")
    assert PlanImageShardsOperator(task_id="p", source="", bucket=bucket, aws_conn_id=conn).execute({}) == []
    summary = CollectImagesOperator(
        task_id="c", results=None, source="", bucket=bucket, aws_conn_id=conn
    ).execute({"run_id": "r"})
    assert [i["source"] for i in summary["images"]] == ["blue_box_1_000133.jpg", "p0.jpg", "p1.jpg", "p2.jpg"]
    assert summary["uploaded"] == 0 and summary["unchanged"] == 4


# ---------------------------------------------------------------- the task group in a DAG run

DAG_FILE = """
from datetime import datetime

from deeplens_pipeline.airflow_compat import DAG, Param

from deeplens_pipeline.operators.images import build_images_group

with DAG(
    "images_group_test",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    render_template_as_native_obj=True,
    params={
        "image_source": Param("", type="string"),
        "bucket": Param("", type="string"),
        "image_shape": Param(300, type="integer", enum=[300, 480, 512]),
        "resize_mode": Param("letterbox", type="string"),
        "pad_color": Param("#202020", type="string"),
        "jpeg_quality": Param(85, type="integer"),
        "max_reject_share": Param(0.5, type="number"),
        "classes": Param(["storage box"], type="array"),
        "label_attribute": Param("bounding-box", type="string"),
        "manifest": Param("", type="string"),
    },
) as dag:
    build_images_group(
        source="{{ params.image_source }}",
        bucket="{{ params.bucket }}",
        aws_conn_id="%s",
        image_shape="{{ params.image_shape }}",
        resize_mode="{{ params.resize_mode }}",
        pad_color="{{ params.pad_color }}",
        quality="{{ params.jpeg_quality }}",
        max_reject_share="{{ params.max_reject_share }}",
        label_attribute="{{ params.label_attribute }}",
        classes="{{ params.classes }}",
        manifest="{{ params.manifest }}",
        shard_size=2,
        processes=1,
    )
"""


@pytest.fixture
def dag_folder(tmp_path, monkeypatch):
    """A DAGs folder holding one DAG with the images group, and a migrated Airflow database."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "images_group_test.py").write_text(DAG_FILE % CONN_ID)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    bundle["kwargs"] = {"path": str(folder)}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "include")]))
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=env, capture_output=True
    )
    return folder


def test_the_mapped_group_runs_in_a_dag(conn, bucket, folder, manifest, dag_folder, s3):
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # before Airflow 3.2
        from airflow.models.dagbag import DagBag

    photo(folder / "{{ not jinja }}.jpg", 5)  # file names are data, never templates

    bag = DagBag(dag_folder=str(dag_folder))
    assert not bag.import_errors
    dag = bag.get_dag("images_group_test")
    assert {t.task_id for t in dag.tasks} == {
        "images.plan_shards",
        "images.preprocess_upload",
        "images.collect",
    }
    conf = {"image_source": str(folder), "bucket": bucket, "manifest": str(manifest)}
    run = dag.test(run_conf=conf)
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert states == {
        ("images.plan_shards", -1): "success",
        ("images.preprocess_upload", 0): "success",
        ("images.preprocess_upload", 1): "success",
        ("images.preprocess_upload", 2): "success",
        ("images.collect", -1): "success",
    }
    summary = run.get_task_instance("images.collect").xcom_pull(task_ids="images.collect")
    assert [(i["key"], i["source"]) for i in summary["images"]] == [
        ("input/blue_box_1_000133.jpg", "blue_box_1_000133.jpg"),
        ("input/not_jinja.jpg", "{{ not jinja }}.jpg"),
        ("input/p0.jpg", "p0.jpg"),
        ("input/p1.jpg", "p1.jpg"),
        ("input/p2.jpg", "p2.jpg"),
    ]
    assert (
        summary["uploaded"] == 5 and summary["rejected"] == 1 and summary["images"][0]["boxes_carried"] == 1
    )
    body = s3.get_object(Bucket=bucket, Key="input/p0.jpg")["Body"]
    with Image.open(body) as im:
        assert im.size == (300, 300)  # the Param, rendered natively
        assert im.getpixel((150, 2)) == pytest.approx((32, 32, 32), abs=3)  # pad colour from the Param
