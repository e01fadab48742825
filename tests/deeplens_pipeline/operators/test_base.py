"""The run scope job names derive from: environment id (variable or Airflow Variable), DAG, run."""

from types import SimpleNamespace

import pytest

from deeplens_pipeline.operators import base


class VariableStore:
    """Airflow's Variable API over a dict (what the task SDK offers a running task)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, description=None):
        self.values[key] = value


@pytest.fixture
def variables(monkeypatch):
    from deeplens_pipeline import airflow_compat

    store = VariableStore()
    monkeypatch.setattr(airflow_compat, "Variable", store)
    monkeypatch.delenv(base.ENVIRONMENT_ENV, raising=False)
    return store


CONTEXT = {"run_id": "manual__2026-11-26T05:00:00+00:00", "dag_run": SimpleNamespace(dag_id="d")}


def test_the_first_task_creates_the_environment_id_and_every_later_task_reads_it(variables):
    first = base.run_scope(CONTEXT, create_environment=True)
    assert len(first.environment) == 32 and variables.values[base.ENVIRONMENT_VARIABLE] == first.environment
    assert base.run_scope(CONTEXT) == first
    assert base.run_scope(CONTEXT, create_environment=True) == first  # not replaced


def test_a_later_task_refuses_to_name_jobs_anew_when_the_variable_vanished(variables):
    with pytest.raises(RuntimeError, match="deeplens_environment_id .* is missing"):
        base.run_scope(CONTEXT)
    assert variables.values == {}


def test_the_environment_variable_wins(variables, monkeypatch):
    monkeypatch.setenv(base.ENVIRONMENT_ENV, "mwaa-prod")
    assert base.run_scope(CONTEXT).environment == "mwaa-prod"
    assert variables.values == {}


def test_a_context_without_dag_or_run_is_refused(variables):
    with pytest.raises(ValueError, match="names no DAG or no run"):
        base.run_scope({"run_id": "r"})


def test_check_params_fails_a_bad_value_at_once_and_retries_anything_else(variables):
    from deeplens_pipeline.airflow_compat import AirflowFailException
    from deeplens_pipeline.operators.config import CheckParamsOperator

    operator = CheckParamsOperator(task_id="check_params", retries=2)
    with pytest.raises(AirflowFailException, match=r"^params\.bucket: must begin with 'deeplens-'"):
        operator.execute({**CONTEXT, "params": {"bucket": "photos"}})  # no retry can fix it
    result = operator.execute({**CONTEXT, "params": {}})
    assert result["job_names"]["training_job"].startswith("deeplens-train-202611260500-")
    assert result["warnings"] == []


def test_a_multiple_outputs_result_carries_no_none():
    """Airflow 3.0.x answers 422 to a None pushed per key (apache/airflow#55062): such keys are left out."""
    assert base.xcom_outputs({"a": 1, "b": None, "c": "", "d": False}) == {"a": 1, "c": "", "d": False}
