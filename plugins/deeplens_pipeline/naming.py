"""Deterministic, AWS-valid names for the jobs and artefacts of one DAG run.

Names derive from the DAG run's ``run_id`` (asset-triggered runs have no logical date), so a
retried task computes the same name and re-attaches to its job instead of paying for a second one.
"""

from __future__ import annotations

import hashlib
import re

# SageMaker job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
SAGEMAKER_NAME_MAX = 63
TUNING_NAME_MAX = 32
LABELING_NAME_MAX = 63
LAMBDA_NAME_MAX = 64
NAME_PREFIX = "deeplens"
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})")


def run_token(run_id: str, length: int = 10) -> str:
    """A short, stable hex token for ``run_id`` (same run id, same token)."""
    if not run_id:
        raise ValueError("run_id is empty: job names are built from the DAG run's run_id")
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:length]


def _stamp(run_id: str) -> str:
    """A readable yyyymmddhhmm taken from a run id that carries a timestamp, else ''."""
    match = _STAMP.search(run_id)
    return "".join(match.groups()[:5]) if match else ""


def job_name(kind: str, run_id: str, *, max_len: int = SAGEMAKER_NAME_MAX) -> str:
    """``deeplens-<kind>-[<yyyymmddhhmm>-]<token>``: valid for SageMaker and within ``max_len``.

    The token alone keeps names unique per run; the timestamp is added only while it fits.
    """
    kind = re.sub(r"[^a-zA-Z0-9]+", "-", kind).strip("-").lower()
    if not kind:
        raise ValueError("job kind must contain a letter or digit")
    token = run_token(run_id)
    base = f"{NAME_PREFIX}-{kind}"
    stamp = _stamp(run_id)
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


def training_job_name(run_id: str) -> str:
    """Training job name for this run (begins with ``deeplens-`` as DeepLens requires)."""
    return job_name("train", run_id)


def tuning_job_name(run_id: str) -> str:
    """Hyperparameter tuning job name for this run (at most 32 characters)."""
    return job_name("tune", run_id, max_len=TUNING_NAME_MAX)


def labeling_job_name(run_id: str) -> str:
    """Ground Truth labelling job name for this run."""
    return job_name("label", run_id, max_len=LABELING_NAME_MAX)


def client_token(purpose: str, run_id: str) -> str:
    """An idempotency token (AmznClientToken and the like) for one call of one run."""
    return hashlib.sha256(f"{purpose}:{run_id}".encode()).hexdigest()[:32]
