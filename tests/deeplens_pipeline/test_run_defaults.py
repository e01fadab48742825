"""$DEEPLENS_RUN_DEFAULTS: this environment's Param defaults, for runs nobody triggers by hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplens_pipeline.params import (
    PARAM_SPECS,
    RUN_DEFAULTS_ENV,
    ParamError,
    validate_params,
    with_run_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {
    "bucket": "deeplens-acme-photos",
    "image_source": "s3://deeplens-acme-photos/incoming/",
    "role_arn": "arn:aws:iam::111122223333:role/deeplens-sagemaker",
    "epochs": 45.0,
}


def test_unset_or_empty_changes_nothing():
    assert with_run_defaults(PARAM_SPECS, None) is PARAM_SPECS
    assert with_run_defaults(PARAM_SPECS, "  ") is PARAM_SPECS


def test_the_values_become_the_defaults_checked_and_coerced():
    specs = with_run_defaults(PARAM_SPECS, json.dumps(DEFAULTS))
    assert specs["bucket"].default == "deeplens-acme-photos"
    assert specs["image_source"].default == "s3://deeplens-acme-photos/incoming/"
    assert specs["epochs"].default == 45 and isinstance(specs["epochs"].default, int)
    assert specs["region"] is PARAM_SPECS["region"]  # the others unchanged
    assert PARAM_SPECS["bucket"].default == "deeplens-object-detection"  # the module's own specs untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bucket: x}", "not JSON"),
        ('["deeplens-x"]', "must be a JSON object"),
        ('{"buckett": "deeplens-x"}', "unknown parameter(s): buckett"),
        ('{"bucket": "photos"}', "params.bucket: must be"),
        ('{"epochs": 0}', "params.epochs: must be at least"),
        ('{"lr_scheduler_step": "5,60", "epochs": 50}', "params.lr_scheduler_step: every step must be below"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_the_parameter(text, message):
    with pytest.raises(ParamError) as err:
        with_run_defaults(PARAM_SPECS, text)
    assert str(err.value).startswith(f"${RUN_DEFAULTS_ENV}: ")
    assert message in str(err.value)


def _dag_params(env_value: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    probe = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('probe', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(json.dumps({k: m.dag.params[k] for k in ('bucket', 'image_source', 'epochs', 'region')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != RUN_DEFAULTS_ENV}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]), AIRFLOW_HOME=str(tmp_path)
    )
    if env_value is not None:
        env[RUN_DEFAULTS_ENV] = env_value
    return subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "dags" / "deeplens_object_detection.py")],
        capture_output=True,
        text=True,
        env=env,
    )


def test_the_dags_params_default_to_the_environments_values(tmp_path):
    """What an asset-triggered or cron run gets (no conf): the Params' defaults, i.e. these."""
    out = _dag_params(json.dumps(DEFAULTS), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    params = json.loads(out.stdout.strip().splitlines()[-1])
    assert params == {
        **{k: DEFAULTS[k] for k in ("bucket", "image_source")},
        "epochs": 45,
        "region": "us-east-1",
    }
    assert validate_params({})["bucket"] == "deeplens-object-detection"  # this process: unset


def test_a_bad_value_is_the_dags_import_error(tmp_path):
    out = _dag_params('{"bucket": "photos"}', tmp_path)
    assert out.returncode != 0
    assert f"${RUN_DEFAULTS_ENV}: params.bucket" in out.stderr
