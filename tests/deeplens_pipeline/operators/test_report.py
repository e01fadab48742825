"""The evaluation report task against the emulator, and its "Evaluation report" link on the task."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from PIL import Image, ImageDraw

from deeplens_pipeline import evaluation
from deeplens_pipeline.airflow_compat import AIRFLOW_3, AirflowFailException
from deeplens_pipeline.evaluation import Detection
from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.layout import run_segment
from deeplens_pipeline.operators.evaluation import evaluation_prefix, metrics_key, no_current_model
from deeplens_pipeline.operators.report import (
    EvaluationReportLink,
    EvaluationReportOperator,
    check_gate,
    console_url,
    object_url,
)
from deeplens_pipeline.params import validate_params

BUCKET = "deeplens-report-op"
CLASSES = ["box", "ball"]
REPO = Path(__file__).resolve().parents[3]
W, H = 320, 240


def _jpeg(seed: int) -> bytes:
    image = Image.new("RGB", (W, H), (40 + seed * 30, 90, 140))
    ImageDraw.Draw(image).rectangle((40, 40, 140, 140), fill=(230, 200, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _answer(detections: list[Detection]) -> bytes:
    """What the built-in algorithm writes for one image (``.out`` of a batch transform)."""
    rows = [[float(d.class_id), d.score, *d.box] for d in detections]
    return json.dumps({"prediction": rows}).encode()


def _stage(s3, run_id: str, *, with_current: bool = True) -> dict:
    """Holdout images, their manifest and each model's answers where the evaluation tasks leave them;
    returns the evaluation results those tasks would have returned."""
    holdout, lines = [], []
    for n in range(3):
        key = f"input/holdout-{n}.jpg"
        s3.put_object(Bucket=BUCKET, Key=key, Body=_jpeg(n))
        image = LabelledImage(
            f"s3://{BUCKET}/{key}",
            W,
            H,
            3,
            [{"class_id": n % 2, "left": 40, "top": 40, "width": 100, "height": 100}],
        )
        holdout.append(image)
        lines.append(image.to_line("bounding-box", CLASSES))
    manifest_key = f"manifests/runs/{run_segment(run_id)}/validation.manifest"
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body="\n".join(lines).encode())
    hit = (40 / W, 40 / H, 140 / W, 140 / H)
    answers = {
        # The candidate finds the first image's box and misses the others (wrong class, wrong place).
        "candidate": [
            [Detection(0, 0.9, hit)],
            [Detection(0, 0.8, hit)],
            [Detection(0, 0.7, (0.6, 0.6, 0.9, 0.9))],
        ],
        "current": [[Detection(0, 0.95, hit)], [Detection(1, 0.9, hit)], [Detection(0, 0.9, hit)]],
    }
    results = {}
    for label in ("candidate", "current") if with_current else ("candidate",):
        output = f"s3://{BUCKET}/{evaluation_prefix(run_id, label)}predictions/"
        found = {}
        for image, detections in zip(holdout, answers[label], strict=True):
            _, key = evaluation.prediction_uri(image.source_ref, output)[5:].split("/", 1)
            s3.put_object(Bucket=BUCKET, Key=key, Body=_answer(detections))
            found[image.source_ref] = detections
        results[label] = {
            "label": label,
            **evaluation.evaluate(found, holdout, CLASSES).as_dict(),
            "model_artifact": f"s3://{BUCKET}/output/{label}/model.tar.gz",
            "holdout_manifest": f"s3://{BUCKET}/{manifest_key}",
            "transform_job": f"deeplens-eval-{label}-x",
            "predictions_uri": output,
            "metrics_uri": f"s3://{BUCKET}/{metrics_key(run_id, label)}",
        }
    return results


@pytest.fixture(scope="module")
def s3(emulator):
    client = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def _context(run_id: str) -> dict:
    params = {"bucket": BUCKET, "classes": CLASSES, "label_attribute": "bounding-box"}
    validate_params(params)
    return {
        "run_id": run_id,
        "dag_run": SimpleNamespace(dag_id="deeplens_object_detection"),
        "params": params,
    }


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.headers["Content-Type"], response.read()


def test_the_report_is_written_to_s3_and_opens_from_its_url(s3, aws_conn, emulator) -> None:
    run_id = "manual__2026-11-26T09:00:00+00:00"
    results = _stage(s3, run_id)
    gate = {
        "decision": "keep",
        "reason": "candidate mAP 0.25 is below the current 0.75 - 0.02",
        "min_map": 0.3,
    }
    out = EvaluationReportOperator(
        task_id="evaluation_report", candidate=results["candidate"], current=results["current"], gate=gate
    ).execute(_context(run_id))
    key = f"reports/{run_segment(run_id)}/index.html"
    assert out["report_uri"] == f"s3://{BUCKET}/{key}"
    # The emulator, like S3, refuses an unsigned read of the object: the link is presigned.
    assert out["report_url"].startswith(f"{emulator.url}/{BUCKET}/{key}?")
    with pytest.raises(urllib.error.HTTPError, match="403"):
        _get(f"{emulator.url}/{BUCKET}/{key}")
    content_type, body = _get(out["report_url"])
    page = body.decode()
    assert content_type.startswith("text/html")
    assert "Gate: Kept the current model" in page and gate["reason"] in page
    assert page.index("holdout-2.jpg") < page.index("holdout-0.jpg")  # the worst first
    assert page.count('src="data:image/') == 4  # two plots, two contact sheets
    listed = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"reports/{run_segment(run_id)}/")["Contents"]
    }
    assert listed == {
        key,
        *(
            f"reports/{run_segment(run_id)}/{n}"
            for n in ("ap_per_class.png", "pr_curves.png", "contact_candidate.jpg", "contact_current.jpg")
        ),
    }
    head = s3.head_object(Bucket=BUCKET, Key=f"reports/{run_segment(run_id)}/contact_candidate.jpg")
    assert head["ContentType"] == "image/jpeg"
    sheet = Image.open(
        io.BytesIO(
            s3.get_object(Bucket=BUCKET, Key=head and f"reports/{run_segment(run_id)}/contact_candidate.jpg")[
                "Body"
            ].read()
        )
    )
    assert sheet.format == "JPEG" and sheet.width > 3 * 200


def test_a_first_run_has_no_current_model(s3, aws_conn) -> None:
    run_id = "scheduled__2026-11-26T10:00:00+00:00"
    results = _stage(s3, run_id, with_current=False)
    out = EvaluationReportOperator(
        task_id="evaluation_report",
        candidate=results["candidate"],
        current=no_current_model("no current model: no Approved version in model package group g yet"),
        gate={"decision": "deploy", "reason": "no model on the device yet"},
    ).execute(_context(run_id))
    page = s3.get_object(Bucket=BUCKET, Key=out["report_uri"].split("/", 3)[3])["Body"].read().decode()
    assert "Gate: Deployed the candidate model" in page
    assert (
        "No current model was evaluated: no current model: no Approved version in model package group g"
        in page
    )
    names = [
        o["Key"].rsplit("/", 1)[1]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"reports/{run_segment(run_id)}/")["Contents"]
    ]
    assert "contact_current.jpg" not in names and "index.html" in names


def test_a_missing_answer_fails_naming_it(s3, aws_conn) -> None:
    run_id = "manual__2026-11-26T11:00:00+00:00"
    results = _stage(s3, run_id, with_current=False)
    gone = evaluation.prediction_uri(
        f"s3://{BUCKET}/input/holdout-1.jpg", results["candidate"]["predictions_uri"]
    )
    s3.delete_object(Bucket=BUCKET, Key=gone.split("/", 3)[3])
    with pytest.raises(AirflowFailException, match=f"candidate: {gone} is missing"):
        EvaluationReportOperator(task_id="r", candidate=results["candidate"]).execute(_context(run_id))


def test_inputs_are_checked_before_anything_is_read() -> None:
    assert check_gate(None) is None and check_gate({}) is None
    with pytest.raises(AirflowFailException, match="gate: decision must be one of"):
        check_gate({"decision": "ship", "reason": "x"})
    with pytest.raises(AirflowFailException, match="gate: reason must be text"):
        check_gate({"decision": "keep"})
    ctx = _context("manual__x")
    with pytest.raises(AirflowFailException, match="candidate: no evaluation result"):
        EvaluationReportOperator(task_id="r", candidate=None).execute(ctx)
    with pytest.raises(
        AirflowFailException, match=r"candidate: the evaluation result lacks \['predictions_uri'"
    ):
        EvaluationReportOperator(task_id="r", candidate={"map": 0.5, "per_class": {}}).execute(ctx)
    with pytest.raises(ValueError, match="max_images"):
        EvaluationReportOperator(task_id="r", candidate={}, max_images=0)


def test_urls_for_aws_and_for_the_emulator() -> None:
    key = "reports/manual__2026-11-26T09_00_00_00_00/index.html"
    assert console_url("my-bucket", key, "eu-west-1") == (
        "https://eu-west-1.console.aws.amazon.com/s3/object/my-bucket?region=eu-west-1&bucketType=general"
        "&prefix=reports%2Fmanual__2026-11-26T09_00_00_00_00%2Findex.html"
    )
    assert console_url("b", "k", "cn-north-1").startswith("https://console.amazonaws.cn/s3/object/b?")
    aws = boto3.client("s3", region_name="us-east-1")
    assert object_url(aws, "b", key, "us-east-1", None) == console_url("b", key, "us-east-1")
    emulated = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:5000")
    url = object_url(emulated, "bkt", "a b/index.html", "us-east-1", "http://127.0.0.1:5000")
    assert url.startswith("http://127.0.0.1:5000/bkt/a%20b/index.html?") and "Signature" in url


def _plugin() -> type:
    sys.path.insert(0, str(REPO / "plugins"))
    try:
        import deeplens_links
    finally:
        sys.path.remove(str(REPO / "plugins"))
    return deeplens_links.DeepLensPipelinePlugin


def test_the_plugin_registers_the_link() -> None:
    assert [type(link) for link in _plugin().operator_extra_links] == [EvaluationReportLink]
    assert [link.name for link in EvaluationReportOperator.operator_extra_links] == ["Evaluation report"]


# ---------------------------------------------------------------- the link on a task instance

DAG_FILE = """
import json
from datetime import datetime

from deeplens_pipeline.airflow_compat import DAG, Param
from deeplens_pipeline.operators.report import EvaluationReportOperator
from deeplens_pipeline.params import PARAM_SPECS

STAGED = json.loads(%r)

with DAG(
    "report_link_test",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    params={name: Param(spec.default, **spec.param_arguments()) for name, spec in PARAM_SPECS.items()},
) as dag:
    EvaluationReportOperator(
        task_id="evaluation_report",
        candidate=STAGED["candidate"],
        current=STAGED["current"],
        gate=STAGED["gate"],
        aws_conn_id="aws_deeplens",
    )
"""


@pytest.fixture
def dag_folder(tmp_path, monkeypatch):
    """A DAGs folder and a migrated Airflow database for a ``dag.test()`` run."""
    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    bundle["kwargs"] = {"path": str(folder)}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "include")]))
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=env, capture_output=True
    )
    return folder


def test_the_task_instance_links_to_its_report(s3, aws_conn, emulator, dag_folder) -> None:
    """A real task run: its report_url XCom is what the "Evaluation report" link resolves to, on the
    DAG as the UI reads it back (serialised)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # before Airflow 3.2
        from airflow.models.dagbag import DagBag

    staged = _stage(s3, "probe")  # the answers' keys: dag.test() names its own run, the report its own keys
    staged["gate"] = {"decision": "deploy", "reason": "candidate passes"}
    (dag_folder / "report_link_test.py").write_text(DAG_FILE % json.dumps(staged))
    bag = DagBag(dag_folder=str(dag_folder))
    assert not bag.import_errors
    dag = bag.get_dag("report_link_test")
    run = dag.test(run_conf={"bucket": BUCKET, "classes": CLASSES})
    ti = run.get_task_instance("evaluation_report")
    assert str(ti.state) in ("success", "TaskInstanceState.SUCCESS")
    returned = ti.xcom_pull(task_ids="evaluation_report")
    assert returned["report_url"].startswith(
        f"{emulator.url}/{BUCKET}/reports/{run_segment(run.run_id)}/index.html?"
    )
    assert _get(returned["report_url"])[0].startswith("text/html")

    if not AIRFLOW_3:  # Airflow 2 rebuilds a link only from a class a plugin registered (deeplens_links.py)
        from airflow import plugins_manager

        link = _plugin().operator_extra_links[0]
        plugins_manager.initialize_extra_operators_links_plugins()
        plugins_manager.registered_operator_link_classes[
            f"{type(link).__module__}.{type(link).__qualname__}"
        ] = type(link)
    # What the UI's extra-links endpoint does: the serialised task's link for the task instance
    # (Airflow 3: the URL the task stored in XCom when it ended).
    from airflow.serialization import serialized_objects

    serialization = getattr(serialized_objects, "DagSerialization", None) or serialized_objects.SerializedDAG
    serialized = serialization.from_dict(serialization.to_dict(dag))
    task = serialized.get_task("evaluation_report")
    assert "Evaluation report" in task.extra_links
    assert task.get_extra_links(ti, "Evaluation report") == returned["report_url"]
