import re

import pytest

from deeplens_pipeline import naming

RUN_IDS = [
    "manual__2026-11-24T05:00:00.123456+00:00",
    "scheduled__2026-01-01T00:00:00+00:00",
    "asset_triggered__2026-11-24T05:00:00+00:00_abc",
    "my custom run / with spaces & symbols",
    "x" * 250,
]
SAGEMAKER = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
DAG = "deeplens_object_detection"


def scope(run_id: str, environment: str = "prod", dag_id: str = DAG) -> naming.RunScope:
    return naming.RunScope(environment, dag_id, run_id)


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_names_are_valid_deterministic_and_prefixed(run_id):
    for build, limit in (
        (naming.training_job_name, 63),
        (naming.labeling_job_name, 63),
        (naming.tuning_job_name, 32),
    ):
        name = build(scope(run_id))
        assert name == build(scope(run_id))
        assert name == name.lower()  # labelling job names compare case-insensitively
        assert name.startswith("deeplens-")
        assert len(name) <= limit
        assert SAGEMAKER.match(name), name


def test_different_runs_get_different_names():
    names = {naming.training_job_name(scope(r)) for r in RUN_IDS}
    assert len(names) == len(RUN_IDS)


@pytest.mark.parametrize(
    "build", [naming.training_job_name, naming.labeling_job_name, naming.tuning_job_name]
)
def test_same_run_id_in_another_environment_or_dag_gets_another_name(build):
    """Job names are account-wide: two environments or two DAGs must never share a job."""
    run_id = RUN_IDS[0]
    names = {
        build(scope(run_id)),
        build(scope(run_id, environment="staging")),
        build(scope(run_id, dag_id="deeplens_object_detection_copy")),
    }
    assert len(names) == 3


def test_a_scope_needs_environment_and_dag():
    with pytest.raises(ValueError, match="environment and the DAG"):
        naming.training_job_name(naming.RunScope("", DAG, RUN_IDS[0]))


def test_timestamp_is_readable_when_it_fits():
    assert naming.training_job_name(scope(RUN_IDS[0])).startswith("deeplens-train-202611240500-")


def test_tuning_name_drops_the_timestamp_to_fit():
    name = naming.tuning_job_name(scope(RUN_IDS[0]))
    assert len(name) <= 32 and "202611" not in name


def test_empty_run_id_is_refused():
    with pytest.raises(ValueError, match="run_id"):
        naming.training_job_name(scope(""))


def test_client_token_is_stable_and_purpose_specific():
    assert naming.client_token("deploy", "r1") == naming.client_token("deploy", "r1")
    assert naming.client_token("deploy", "r1") != naming.client_token("group", "r1")
