"""Settings of the embedded emulator, from the environment (so a server subprocess inherits them)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_ml_python() -> str:
    candidate = REPO_ROOT / ".venv-ml" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


@dataclass
class EmulatorSettings:
    """How the emulated services behave. Every field has an ``EMULATOR_<NAME>`` variable."""

    work_dir: Path = field(default_factory=lambda: Path(os.environ.get("EMULATOR_WORK_DIR", "/tmp/emulator")))
    # Ground Truth: how long the simulated workforce takes, and the answer keys it labels from.
    labeling_delay_seconds: float = 3.0
    answer_keys: tuple[Path, ...] = ()
    # Training: "fast" (real SSD graph, initial weights, seconds) or "train" (really trains).
    training_mode: str = "fast"
    training_backbone: str = "tiny"
    training_max_seconds: int = 240
    ml_python: str = field(default_factory=_default_ml_python)
    # Tuning: at most this many training jobs per tuning job (the request's maximum is logged).
    max_tuning_jobs: int = 2
    # Greengrass: how long the simulated device takes to apply a deployment.
    deployment_delay_seconds: float = 2.0
    # Greengrass V1 ended on 7 October 2026: its API refuses every call unless the legacy service is
    # explicitly kept ("available"), e.g. to test the greengrass-v1 path that stays selectable.
    greengrass_v1: str = "ended"
    # Greengrass V2: how long the service takes to validate a new component version (REQUESTED → DEPLOYABLE).
    component_validation_seconds: float = 1.0
    # A spot training job's billable time is its training time less this share (AWS: "up to 90%").
    spot_saving: float = 0.7

    @classmethod
    def from_env(cls) -> EmulatorSettings:
        """Settings from ``EMULATOR_*`` environment variables, defaults elsewhere."""
        env = os.environ
        base = cls()
        keys = env.get("EMULATOR_ANSWER_KEYS", "")
        return cls(
            work_dir=Path(env.get("EMULATOR_WORK_DIR", str(base.work_dir))),
            labeling_delay_seconds=float(
                env.get("EMULATOR_LABELING_DELAY_SECONDS", base.labeling_delay_seconds)
            ),
            answer_keys=tuple(Path(p) for p in keys.split(os.pathsep) if p),
            training_mode=env.get("EMULATOR_TRAINING_MODE", base.training_mode),
            training_backbone=env.get("EMULATOR_TRAINING_BACKBONE", base.training_backbone),
            training_max_seconds=int(env.get("EMULATOR_TRAINING_MAX_SECONDS", base.training_max_seconds)),
            ml_python=env.get("EMULATOR_ML_PYTHON", base.ml_python),
            max_tuning_jobs=int(env.get("EMULATOR_MAX_TUNING_JOBS", base.max_tuning_jobs)),
            deployment_delay_seconds=float(
                env.get("EMULATOR_DEPLOYMENT_DELAY_SECONDS", base.deployment_delay_seconds)
            ),
            greengrass_v1=env.get("EMULATOR_GREENGRASS_V1", base.greengrass_v1),
            spot_saving=float(env.get("EMULATOR_SPOT_SAVING", base.spot_saving)),
            component_validation_seconds=float(
                env.get("EMULATOR_COMPONENT_VALIDATION_SECONDS", base.component_validation_seconds)
            ),
        )

    def validate(self) -> None:
        """Refuse settings the emulator cannot honour, naming the variable."""
        if self.greengrass_v1 not in ("ended", "available"):
            raise ValueError(
                f"EMULATOR_GREENGRASS_V1 must be 'ended' or 'available', not {self.greengrass_v1!r}"
            )
        if self.training_mode not in ("fast", "train"):
            raise ValueError(f"EMULATOR_TRAINING_MODE must be 'fast' or 'train', not {self.training_mode!r}")
        for key in self.answer_keys:
            if not key.is_file():
                raise ValueError(f"EMULATOR_ANSWER_KEYS: {key} is not a file")
