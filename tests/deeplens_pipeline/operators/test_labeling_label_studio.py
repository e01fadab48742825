"""The labelling operator and trigger against a real Label Studio server and the emulator's S3."""

import asyncio
import io
import json
import socket
import time
from types import SimpleNamespace

import boto3
import pytest
from PIL import Image

from deeplens_pipeline import label_studio as ls
from deeplens_pipeline.airflow_compat import AirflowFailException, TaskDeferred
from deeplens_pipeline.operators.labeling import LabelImagesOperator
from deeplens_pipeline.triggers.label_studio import LabelStudioTasksTrigger

CONN_ID = "label_studio_tests"
RECT = {"left": 10, "top": 20, "width": 30, "height": 40}


def _context(params, run_id):
    return {
        "params": params,
        "run_id": run_id,
        "dag_run": SimpleNamespace(dag_id="deeplens_object_detection"),
    }


def _connection(monkeypatch, url, token, endpoint):
    extra = {"s3_endpoint": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "http", "host": url, "password": token, "extra": extra}),
    )


@pytest.fixture
def setup(request, emulator, aws_conn, label_studio, monkeypatch):
    """A bucket of three prepared images under a prefix of this test's own (so a project of its own)."""
    bucket = "deeplens-ls-op"
    prefix = f"input-{request.node.name[:30].replace('_', '-')}/"
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]:
        s3.delete_object(Bucket=bucket, Key=key)
    buf = io.BytesIO()
    Image.new("RGB", (200, 100)).save(buf, "JPEG")
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"{prefix}p{i}.jpg", Body=buf.getvalue())
    _connection(monkeypatch, label_studio.url, label_studio.token, emulator.url)
    params = {
        "bucket": bucket,
        "input_prefix": prefix,
        "classes": ["box", "ball"],
        "poll_seconds": 1,
        "labeling_timeout_days": 0.01,
    }
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    return SimpleNamespace(s3=s3, bucket=bucket, prefix=prefix, params=params, client=client)


def _op():
    return LabelImagesOperator(task_id="label_images", label_studio_conn_id=CONN_ID)


def _tasks(client, project_id):
    return [t.model_dump() for t in client.tasks.list(project=project_id, fields="all", resolve_uri=False)]


def _annotate(client, task, *, label="box", cancelled=False):
    width, height = 200, 100
    result = [
        {
            "from_name": ls.FROM_NAME,
            "to_name": ls.TO_NAME,
            "type": "rectanglelabels",
            "original_width": width,
            "original_height": height,
            "value": {
                "x": RECT["left"] / width * 100,
                "y": RECT["top"] / height * 100,
                "width": RECT["width"] / width * 100,
                "height": RECT["height"] / height * 100,
                "rotation": 0,
                "rectanglelabels": [label],
            },
        }
    ]
    client.annotations.create(id=task["id"], result=[] if cancelled else result, was_cancelled=cancelled)


def _run_trigger(trigger, limit=60):
    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(first(), limit))


def test_create_import_wait_export_merge_then_a_rerun_imports_nothing(setup):
    ctx = _context(setup.params, "manual__2026-11-26T01:00:00+00:00")
    with pytest.raises(TaskDeferred) as deferred:
        _op().execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, LabelStudioTasksTrigger)
    assert deferred.value.timeout is None  # the trigger ends the wait itself, at labeling_timeout_days
    tasks = _tasks(setup.client, trigger.project_id)
    assert sorted(ls.task_image(t) for t in tasks) == [
        f"s3://{setup.bucket}/{setup.prefix}p{i}.jpg" for i in range(3)
    ]
    project = setup.client.projects.get(id=trigger.project_id)
    assert ls.config_labels(project.label_config) == ["box", "ball"]
    assert [s.bucket for s in setup.client.import_storage.s3.list(project=trigger.project_id)] == [
        setup.bucket
    ]
    # The annotators' browsers load the presigned images cross-origin: the bucket gets the GET rule.
    rules = setup.s3.get_bucket_cors(Bucket=setup.bucket)["CORSRules"]
    assert any("GET" in r["AllowedMethods"] and "*" in r["AllowedOrigins"] for r in rules)

    by_image = {ls.task_image(t): t for t in tasks}
    first, second, third = (by_image[f"s3://{setup.bucket}/{setup.prefix}p{i}.jpg"] for i in range(3))
    _annotate(setup.client, first)
    _annotate(setup.client, second, label="ball")
    _annotate(setup.client, second, label="box")  # a second opinion, newer: it wins
    _annotate(setup.client, third, cancelled=True)  # the annotator skipped it

    event = _run_trigger(trigger)
    assert event == {"status": "success", "answered": 3, "tasks": 3}
    result = _op().execute_complete(ctx, event)
    assert result["backend"] == "label-studio"
    assert result["project"] == project.title and result["project_url"].endswith(f"/projects/{project.id}")
    assert result["job"]["images"] == 2 and result["job"]["boxes"] == {"box": 2}
    assert result["left_out"] == {"skipped in Label Studio": [ls.task_image(third)]}
    assert result["export"]["superseded_annotations"] == 1

    labels = setup.s3.get_object(Bucket=setup.bucket, Key="manifests/labels.manifest")["Body"].read().decode()
    lines = [json.loads(line) for line in labels.splitlines()]
    assert {line["source-ref"] for line in lines} == {ls.task_image(first), ls.task_image(second)}
    for line in lines:
        assert line["bounding-box"]["annotations"] == [{"class_id": 0, **RECT}]
        assert line["bounding-box"]["image_size"] == [{"width": 200, "height": 100, "depth": 3}]
    output = f"output/{result['job_name']}/manifests/output/output.manifest"
    assert setup.s3.get_object(Bucket=setup.bucket, Key=output)["ContentLength"] > 0

    # A rerun: nothing new to import, the skipped image is reported again, no wait.
    again = _op().execute(_context(setup.params, "manual__2026-11-26T02:00:00+00:00"))
    assert len(_tasks(setup.client, trigger.project_id)) == 3
    assert again["left_out"] == {"skipped in Label Studio": [ls.task_image(third)]}


def test_a_wrong_token_fails_at_once_naming_the_connection(setup, label_studio, emulator, monkeypatch):
    _connection(monkeypatch, label_studio.url, "not-a-token", emulator.url)
    with pytest.raises(AirflowFailException, match=rf"connection '{CONN_ID}'.*refused its token"):
        _op().execute(_context(setup.params, "manual__2026-11-26T03:00:00+00:00"))


def test_a_renamed_class_is_refused_and_an_added_one_joins_the_interface(setup):
    ctx = _context(setup.params, "manual__2026-11-26T04:00:00+00:00")
    with pytest.raises(TaskDeferred) as deferred:
        _op().execute(ctx)
    project_id = deferred.value.trigger.project_id
    grown = {**setup.params, "classes": ["box", "ball", "cone"]}
    with pytest.raises(TaskDeferred):
        _op().execute(_context(grown, "manual__2026-11-26T05:00:00+00:00"))
    assert ls.config_labels(setup.client.projects.get(id=project_id).label_config) == ["box", "ball", "cone"]
    renamed = {**setup.params, "classes": ["crate", "ball", "cone"]}
    with pytest.raises(AirflowFailException, match=r"lacks \['box'\]"):
        _op().execute(_context(renamed, "manual__2026-11-26T06:00:00+00:00"))


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_trigger_keeps_waiting_while_the_server_is_down(monkeypatch, capsys):
    _connection(monkeypatch, f"http://127.0.0.1:{_closed_port()}", "token", "http://127.0.0.1:1")
    trigger = LabelStudioTasksTrigger(
        conn_id=CONN_ID, project_id=1, task_ids=[1], poll_seconds=1, deadline=time.time() + 4, max_backoff=2
    )
    started = time.monotonic()
    event = _run_trigger(trigger)
    assert event["status"] == "timeout"  # not an error: the run takes what was labelled
    assert time.monotonic() - started >= 3.5
    log = capsys.readouterr().out
    assert log.count("did not answer") >= 2 and "still waiting, next try in" in log
