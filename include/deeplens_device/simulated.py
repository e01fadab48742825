"""Run the unmodified inference function on the simulated DeepLens, in a subprocess.

    install_model(archive, artifacts_dir)           # as the recipe's `tar -xzf ... -C /opt/awscam/artifacts`
    env = function_environment(...)                 # what the deployment sets (DEEPLENS_* variables)
    process = start_function(python37, function_dir, env)

The function's process gets the device's ``python3.7`` (``launcher.write_device_python``), the
settings the pipeline's deployment sets as environment variables, the camera source and the
artefacts folder of the stand-ins. The publisher (``greengrasssdk`` or Greengrass V2 IPC) is the
caller's: ``extra_path`` puts folders on the function's path, ``base`` passes the Greengrass
variables.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

FUNCTION_FILE = "deeplens_inference.py"
FUNCTION_DIR = Path(__file__).resolve().parents[1] / "lambda"
"""The inference function's source (``include/lambda``)."""


def _function_logic() -> ModuleType:
    """The function's own ``deeplens_logic`` (standard library only), loaded from its folder."""
    spec = importlib.util.spec_from_file_location(
        "deeplens_logic_settings", FUNCTION_DIR / "deeplens_logic.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENVIRONMENT_NAMES: dict[str, str] = dict(_function_logic().ENVIRONMENT_NAMES)
"""The environment variables the function reads its settings from (``deeplens_logic``'s)."""


def install_model(archive: Path, artifacts_dir: Path) -> list[str]:
    """Unpack a repacked model archive into ``artifacts_dir``; the member names."""
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        tar.extractall(artifacts_dir, members=members, filter="data")
    return [m.name for m in members]


def function_environment(
    *,
    model_name: str,
    image_shape: int,
    labels: Sequence[str],
    thing_name: str,
    camera_source: Path,
    artifacts_dir: Path,
    results_fifo: Path,
    threshold: float = 0.5,
    camera_fps: float | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The function process's environment: ``base`` plus the device settings and stand-in paths."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            ENVIRONMENT_NAMES["model_name"]: model_name,
            ENVIRONMENT_NAMES["image_shape"]: str(image_shape),
            ENVIRONMENT_NAMES["labels"]: json.dumps(list(labels)),
            ENVIRONMENT_NAMES["threshold"]: str(threshold),
            ENVIRONMENT_NAMES["results_fifo"]: str(results_fifo),
            "AWS_IOT_THING_NAME": thing_name,
            "DEEPLENS_CAMERA_SOURCE": str(camera_source),
            "DEEPLENS_AWSCAM_ARTIFACTS": str(artifacts_dir),
        }
    )
    if camera_fps:
        env["DEEPLENS_CAMERA_FPS"] = str(camera_fps)
    return env


def start_function(
    python37: Path,
    env: Mapping[str, str],
    function_dir: Path = FUNCTION_DIR,
    extra_path: Sequence[Path] = (),
    log_path: Path | None = None,
) -> subprocess.Popen:
    """Start ``python3.7 -u deeplens_inference.py`` in ``function_dir`` (output to ``log_path``)."""
    env = dict(env)
    if extra_path:
        joined = os.pathsep.join(str(p) for p in extra_path)
        env["PYTHONPATH"] = joined + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (owned by the child)
    try:
        return subprocess.Popen(
            [str(python37), "-u", FUNCTION_FILE],
            cwd=str(function_dir),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path:
            output.close()
