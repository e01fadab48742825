"""Parsing the DAG file stays cheap: no AWS or image library, no provider module, on its import path.

The DAG processor parses the file again and again, and every task parses it before it runs: what
its import path loads, each parse pays (boto3 and botocore alone cost about a second of CPU).
The figures are ``scripts/bench_parse.py``'s; this only guards what makes them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "deeplens_object_detection.py"

# What the DAG file's import path must not load (each is loaded when a task runs, if it needs it).
HEAVY = (
    "boto3",
    "botocore",
    "s3transfer",
    "aiobotocore",
    "PIL",
    "pillow_heif",
    "label_studio_sdk",
    "mxnet",
    "model_fix",
    "airflow.providers.amazon",  # every module of the Amazon provider imports boto3
)

PROBE = """
import importlib.util, json, sys

try:
    import airflow.sdk  # what a parse process has before it reads the file
except ImportError:  # Airflow 2
    import airflow.models.dag

before = set(sys.modules)
spec = importlib.util.spec_from_file_location("deeplens_object_detection_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # as DagBag imports a DAG file
heavy = json.loads(sys.argv[2])
loaded = set(sys.modules) - before
print(json.dumps({
    "dag_id": module.dag.dag_id,
    "tasks": len(module.dag.tasks),
    "heavy": sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy)),
}))
"""


def test_the_dag_files_import_path_loads_no_heavy_module(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]),
        "AIRFLOW_HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAG_FILE), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dag_id"] == "deeplens_object_detection" and result["tasks"] == 23
    assert result["heavy"] == [], "parsing the DAG file imports these; import them inside the task instead"


def _dag():
    """The DAG object, imported from its file as the DAG processor imports it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deeplens_object_detection_cost", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_serialising_renders_each_tasks_params_once_and_changes_nothing(monkeypatch):
    """Airflow renders a task's Params twice more than it keeps (each time validating all of them):
    the pipeline's operators skip those passes, and the serialized DAG stays exactly the same."""
    try:
        from airflow.sdk.definitions.param import ParamsDict
    except ImportError:  # Airflow 2
        from airflow.models.param import ParamsDict
    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # before Airflow 3.2
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

    from deeplens_pipeline.airflow_compat import BaseOperator
    from deeplens_pipeline.operators.base import ParamsSerializedOnce

    dag = _dag()
    dumps = []
    original = ParamsDict.dump
    monkeypatch.setattr(ParamsDict, "dump", lambda self: dumps.append(1) or original(self))
    ours = DagSerialization.to_dict(dag)
    others = [t.task_id for t in dag.tasks if not isinstance(t, ParamsSerializedOnce)]
    assert others == ["images.preprocess_upload"]  # mapped: Airflow's MappedOperator serialises it
    assert len(dumps) <= 2 * len(others)  # only the tasks that are not the pipeline's operators

    monkeypatch.setattr(
        ParamsSerializedOnce,
        "get_serialized_fields",
        classmethod(lambda cls: BaseOperator.get_serialized_fields.__func__(cls)),
    )
    assert DagSerialization.to_dict(dag) == ours
    assert all("params" in task["__var"] for task in ours["dag"]["tasks"])
