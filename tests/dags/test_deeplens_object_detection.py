"""DAG integrity: it imports, has the expected tasks and edges, typed Params, and parses cheaply."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplens_pipeline.airflow_compat import XComArg

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "deeplens_object_detection.py"


@pytest.fixture(scope="module")
def dag():
    """The DAG object, imported from its file the way the DAG processor does (no database needed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deeplens_object_detection_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


EDGES = {
    ("check_params", "images.plan_shards"),
    ("images.plan_shards", "images.preprocess_upload"),
    ("images.preprocess_upload", "images.collect"),
    ("images.collect", "enough_new_photos"),
    ("enough_new_photos", "label_images"),
    ("enough_new_photos", "keep_current_model"),
    ("keep_current_model", "summary"),
    ("label_images", "split_manifest"),
    ("split_manifest", "choose_training"),
    ("choose_training", "train_model"),
    ("choose_training", "tune_model"),
    ("train_model", "pick_model"),
    ("tune_model", "pick_model"),
    ("pick_model", "evaluate_candidate"),
    ("pick_model", "evaluate_current"),
    ("evaluate_candidate", "register_model"),
    ("evaluate_current", "register_model"),
    ("register_model", "gate"),
    ("gate", "approve_model"),
    ("gate", "reject_model"),
    ("gate", "evaluation_report"),
    ("evaluate_current", "evaluation_report"),
    ("evaluation_report", "summary"),
    ("approve_model", "summary"),
    ("reject_model", "summary"),
    ("approve_model", "repack_model"),
    ("repack_model", "publish_lambda"),
    ("publish_lambda", "deploy_to_device"),
    ("deploy_to_device", "summary"),
}


def test_tasks_and_edges(dag):
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges >= EDGES
    assert {t for e in EDGES for t in e} == set(dag.task_ids)
    assert dag.get_task("pick_model").trigger_rule == "none_failed_min_one_success"


class FakeTI:
    """What a template's ``ti.xcom_pull(task_ids=..., key=...)`` reads (None for what was never pushed)."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> object:
        return self.values.get(task_ids) if key == "return_value" else self.values.get((task_ids, key))


def summary_results(dag) -> dict:
    return dag.get_task("summary").results


def test_the_gate_is_a_branch_and_the_device_gets_the_approved_version(dag):
    """The gate is visible in the graph (a branch) and repack takes approve_model's registry version."""
    from deeplens_pipeline.airflow_compat import BaseBranchOperator

    gate = dag.get_task("gate")
    assert isinstance(gate, BaseBranchOperator)
    assert gate.downstream_task_ids == {"approve_model", "reject_model", "evaluation_report"}
    assert gate.also_follow == ("evaluation_report",)  # the report is drawn on both branches
    assert "register_model" in gate.upstream_task_ids
    repack = dag.get_task("repack_model")
    assert repack.upstream_task_ids == {"approve_model"}
    assert repack.model.operator.task_id == "approve_model"
    # Both evaluations score the split's one holdout manifest.
    for task_id in ("evaluate_candidate", "evaluate_current"):
        manifest = dag.get_task(task_id).holdout_manifest
        rendered = (
            dag.get_template_env()
            .from_string(manifest)
            .render(ti=FakeTI({"split_manifest": {"validation_uri": "s3://deeplens-x/manifests/v.manifest"}}))
        )
        assert rendered == "s3://deeplens-x/manifests/v.manifest", task_id
    artifact = dag.get_task("evaluate_candidate").model_artifact
    rendered = (
        dag.get_template_env()
        .from_string(artifact)
        .render(ti=FakeTI({"pick_model": {"model_artifact": "s3://deeplens-x/output/model.tar.gz"}}))
    )
    assert rendered == "s3://deeplens-x/output/model.tar.gz"
    assert "pick_model" in dag.get_task("evaluate_candidate").upstream_task_ids
    # The report compares with the current model only when there was one.
    report = dag.get_task("evaluation_report")
    env = dag.get_template_env()
    evaluated = {"map": 0.4, "per_class": {}, "predictions_uri": "s3://x/", "holdout_manifest": "s3://x/m"}
    assert env.from_string(report.current).render(ti=FakeTI({"evaluate_current": evaluated})) == evaluated
    none = {"map": None, "no_current_model": True, "reason": "no current model"}
    assert env.from_string(report.current).render(ti=FakeTI({"evaluate_current": none})) is None
    assert report.gate.operator.task_id == "gate" and report.gate.key == "decision"
    assert report.trigger_rule == "all_success"  # skipped with the rest when too few new photos
    # Keys pushed only on some paths are read by templates (None when absent): an XComArg with a key
    # raises XComNotFound when its task never ran, which would fail the summary on the other paths.
    for key, value in summary_results(dag).items():
        if isinstance(value, XComArg):
            assert value.key == "return_value", key
    approval = summary_results(dag)["approval"]
    assert env.from_string(approval).render(ti=FakeTI({})) is None
    # The summary also runs when the gate, or a person, kept the current model.
    summary = dag.get_task("summary")
    assert summary.trigger_rule == "none_failed_min_one_success"
    assert {"evaluate_candidate", "reject_model", "approve_model"} <= summary.upstream_task_ids
    for name in ("min_map", "max_regression", "require_approval", "evaluation_instance_type"):
        assert dag.params.get_param(name).schema["section"] == "Evaluation", name
    assert dag.params["require_approval"] is False and dag.params["min_map"] == 0.0


def test_long_waits_defer(dag):
    for task_id in (
        "label_images",
        "train_model",
        "tune_model",
        "evaluate_candidate",
        "evaluate_current",
        "approve_model",
        "deploy_to_device",
    ):
        assert hasattr(dag.get_task(task_id), "execute_complete"), task_id
    assert dag.get_task("train_model").deferrable and dag.get_task("tune_model").deferrable


def test_params_are_typed_with_json_schema(dag):
    params = dag.params
    assert params.get_param("image_shape").schema["enum"] == [300, 480, 512]
    assert params.get_param("training_mode").schema["enum"] == ["train", "tune"]
    assert params.get_param("classes").schema["type"] == "array"
    for name in params:
        param = params.get_param(name)
        assert "type" in param.schema and param.description, name
    params.validate()


def test_bad_param_value_is_refused_naming_it(dag):
    try:
        from airflow.sdk.definitions.param import ParamsDict
    except ImportError:  # Airflow 2
        from airflow.models.param import ParamsDict

    bad = ParamsDict({k: dag.params.get_param(k) for k in dag.params})
    with pytest.raises(Exception, match="bucket"):
        bad["bucket"] = "my-bucket"


def test_parse_is_cheap_no_mxnet_no_pil_no_aws_calls(tmp_path):
    probe = f"""
import json, sys, botocore.session
calls = []
original = botocore.session.Session.create_client
botocore.session.Session.create_client = lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
import runpy
runpy.run_path({str(DAG_FILE)!r})
print(json.dumps({{"clients": len(calls),
                   "heavy": sorted(m for m in ("mxnet", "PIL", "PIL.Image", "model_fix", "pillow_heif")
                                   if m in sys.modules)}}))
"""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'plugins'}:{ROOT / 'include'}", AIRFLOW_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"clients": 0, "heavy": []}


def test_every_aws_task_works_in_params_region(dag):
    """The run's region reaches every client and trigger, whatever the connection's region says:
    each task that talks to AWS either takes ``region_name`` from params.region or builds its hooks
    in the checked config's region (the pipeline's own operators)."""
    from deeplens_pipeline.operators.base import PipelineOperator

    aws_tasks = {
        t.task_id
        for t in dag.tasks
        if t.task_id not in ("check_params", "choose_training", "keep_current_model", "gate")
    }
    for task in dag.tasks:
        if task.task_id not in aws_tasks:
            continue
        region = getattr(task, "partial_kwargs", {}).get("region_name") or getattr(task, "region_name", None)
        if region is None:
            assert isinstance(task, PipelineOperator), f"{task.task_id} has no region"
        else:
            assert region == "{{ params.region }}", task.task_id


def test_the_lambda_gets_its_own_role(dag):
    assert dag.get_task("publish_lambda").role_arn == "{{ params.lambda_role_arn }}"


def test_check_params_retries_like_any_task(dag):
    """Only a bad value must not be retried (the operator raises AirflowFailException for it)."""
    assert dag.get_task("check_params").retries == 2


@pytest.mark.parametrize("value", ["1e3", "123", "", "photos/2026"])
def test_free_text_params_reach_the_images_group_as_the_text_given(dag, value):
    """Templates render as native objects: "1e3" must not become 1000.0 on its way to a task."""
    env = dag.get_template_env()
    plan = dag.get_task("images.plan_shards")
    collect = dag.get_task("images.collect")
    params = {"image_source": value, "labels_manifest": value, "label_attribute": value}
    for template in (plan.source, plan.manifest, collect.label_attribute):
        assert env.from_string(template).render(params=params) == value
    # Without tojson the same template gives a number: the test can fail.
    assert env.from_string("{{ params.image_source }}").render(params={"image_source": "1e3"}) == 1000.0
