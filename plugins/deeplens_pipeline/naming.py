"""Deterministic, AWS-valid names for the jobs and artefacts of one DAG run.

Names derive from the DAG run's ``run_id`` (asset-triggered runs have no logical date), so a
retried task computes the same name and re-attaches to its job instead of paying for a second one.
SageMaker job names are unique per account and region (labelling job names can never be reused,
and compare case-insensitively), so the name's token also covers the Airflow environment and the
DAG: two environments or two DAGs in one account never share a job (:class:`RunScope`).
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

# SageMaker job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
SAGEMAKER_NAME_MAX = 63
TUNING_NAME_MAX = 32
LABELING_NAME_MAX = 63
LAMBDA_NAME_MAX = 64
NAME_PREFIX = "deeplens"
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})")


class RunScope(NamedTuple):
    """What identifies one DAG run across an AWS account: environment, DAG and run id."""

    environment: str
    dag_id: str
    run_id: str

    @property
    def token(self) -> str:
        """A short hex token for this run of this DAG in this environment."""
        if not self.run_id:
            raise ValueError("run_id is empty: job names are built from the DAG run's run_id")
        if not self.environment or not self.dag_id:
            raise ValueError("a run scope needs the environment and the DAG id, not only the run id")
        return run_token(f"{self.environment}\n{self.dag_id}\n{self.run_id}")


def run_token(run_id: str, length: int = 10) -> str:
    """A short, stable hex token for ``run_id`` (same run id, same token)."""
    if not run_id:
        raise ValueError("run_id is empty: job names are built from the DAG run's run_id")
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:length]


def _stamp(run_id: str) -> str:
    """A readable yyyymmddhhmm taken from a run id that carries a timestamp, else ''."""
    match = _STAMP.search(run_id)
    return "".join(match.groups()[:5]) if match else ""


def job_name(kind: str, scope: RunScope, *, max_len: int = SAGEMAKER_NAME_MAX) -> str:
    """``deeplens-<kind>-[<yyyymmddhhmm>-]<token>``: valid for SageMaker and within ``max_len``.

    The token alone keeps names unique per run, DAG and environment; the run's timestamp is added
    only while it fits. Names are lower case (labelling job names compare case-insensitively).
    """
    kind = re.sub(r"[^a-zA-Z0-9]+", "-", kind).strip("-").lower()
    if not kind:
        raise ValueError("job kind must contain a letter or digit")
    token = scope.token
    base = f"{NAME_PREFIX}-{kind}"
    stamp = _stamp(scope.run_id)
    name = f"{base}-{stamp}-{token}" if stamp else f"{base}-{token}"
    if len(name) > max_len:
        name = f"{base}-{token}"
    if len(name) > max_len:
        room = max_len - len(NAME_PREFIX) - 2 - len(token)
        if room < 1:
            raise ValueError(f"no valid name for kind {kind!r} fits in {max_len} characters")
        name = f"{NAME_PREFIX}-{kind[:room].strip('-')}-{token}"
    if not _SAGEMAKER_NAME.match(name):  # pragma: no cover - construction guarantees it
        raise ValueError(f"built an invalid job name {name!r}")
    return name


def training_job_name(scope: RunScope) -> str:
    """Training job name for this run (begins with ``deeplens-`` as DeepLens requires)."""
    return job_name("train", scope)


def tuning_job_name(scope: RunScope) -> str:
    """Hyperparameter tuning job name for this run (at most 32 characters)."""
    return job_name("tune", scope, max_len=TUNING_NAME_MAX)


def labeling_job_name(scope: RunScope) -> str:
    """Ground Truth labelling job name for this run."""
    return job_name("label", scope, max_len=LABELING_NAME_MAX)


def client_token(purpose: str, run_id: str) -> str:
    """An idempotency token (AmznClientToken and the like) for one call of one run."""
    return hashlib.sha256(f"{purpose}:{run_id}".encode()).hexdigest()[:32]
