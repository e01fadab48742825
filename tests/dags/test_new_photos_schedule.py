"""New photos start a run: the DAG's schedule with the queue set, and the parse stays cheap."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplens_pipeline import new_photos_asset
from deeplens_pipeline.new_photos_asset import WATCHES, dag_schedule, watcher_kwargs

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/deeplens-new-photos"

pytestmark = pytest.mark.skipif(not WATCHES, reason="this Airflow has no asset watchers (before 3.0.1)")


def test_without_asset_watchers_the_schedule_stays_the_cron(monkeypatch):
    monkeypatch.setattr(new_photos_asset, "WATCHES", False)
    assert dag_schedule("0 3 * * *", QUEUE, "c") == "0 3 * * *"


def test_the_trigger_serializes_as_the_common_messaging_trigger_does():
    msg_queue = pytest.importorskip("airflow.providers.common.messaging.triggers.msg_queue")
    kwargs = watcher_kwargs(QUEUE, "aws_deeplens")
    expected = msg_queue.MessageQueueTrigger(scheme="sqs", **kwargs).serialize()
    assert new_photos_asset.NewPhotosQueueTrigger(**kwargs).serialize() == expected
    assert expected[0] == "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"


def test_the_schedule_is_the_asset_or_the_cron_or_both():
    assert dag_schedule(None, None, "c") is None
    assert dag_schedule("0 3 * * *", "", "c") == "0 3 * * *"
    asset = dag_schedule(None, QUEUE, "c")
    assert asset.name == "deeplens_new_photos" and asset.watchers[0].trigger.kwargs["sqs_queue"] == QUEUE
    assert asset.watchers[0].trigger.kwargs["region_name"] == "us-east-1"  # the queue's, not the connection's
    emulated = dag_schedule(None, "http://127.0.0.1:5000/123456789012/deeplens-new-photos", "c")
    assert emulated.watchers[0].trigger.kwargs["region_name"] is None  # not AWS: the connection's region
    both = dag_schedule("0 3 * * *", QUEUE, "c")
    assert type(both).__name__ == "AssetOrTimeSchedule"


def test_with_the_queue_set_the_dag_file_still_loads_no_heavy_module(tmp_path):
    """Nor the common-messaging provider: the triggerer runs the Amazon provider's SqsSensorTrigger."""
    probe = (
        "import importlib.util, json, sys\nimport airflow.sdk\nbefore = set(sys.modules)\n"
        "spec = importlib.util.spec_from_file_location('probe', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "try:\n    from airflow.serialization.serialized_objects import DagSerialization as S\n"
        "except ImportError:\n    from airflow.serialization.serialized_objects import SerializedDAG as S\n"
        "d = S.to_dict(m.dag)\n"
        "heavy = [x for x in set(sys.modules) - before if x.split('.')[0] in ('boto3', 'botocore')"
        " or x.startswith(('airflow.providers.amazon', 'airflow.providers.common.messaging'))]\n"
        "print(json.dumps({'heavy': sorted(heavy), 'timetable': d['dag']['timetable']['__type']}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]),
        "AIRFLOW_HOME": str(tmp_path),
        "DEEPLENS_NEW_PHOTOS_QUEUE_URL": QUEUE,
    }
    out = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "dags" / "deeplens_object_detection.py")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["timetable"].endswith("AssetTriggeredTimetable")


def test_too_few_new_photos_branch_to_keep_current_model_and_the_summary_still_runs():
    spec = importlib.util.spec_from_file_location(
        "dag_new_photos", ROOT / "dags" / "deeplens_object_detection.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    assert dag.get_task("enough_new_photos").downstream_task_ids == {"label_images", "keep_current_model"}
    summary = dag.get_task("summary")
    assert {"deploy_to_device", "keep_current_model"} <= summary.upstream_task_ids
    assert summary.trigger_rule == "none_failed_min_one_success"
