"""Simulated DeepLens tests: skipped where user + mount namespaces (``unshare -rm``) are refused."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.simulated_deeplens.namespace import namespace_unavailable

HEARTBEAT = "/tmp/function-heartbeat.json"

STAND_IN_FUNCTION = textwrap.dedent(
    """
    # A stand-in for the inference function: reports what it sees on the device, then keeps running.
    import json, os, sys, time
    seen = {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "thing": os.environ.get("AWS_IOT_THING_NAME"),
        "extra": os.environ.get("EXTRA_VARIABLE"),
        "artifacts": sorted(os.listdir("/opt/awscam/artifacts")),
        "config": json.load(open("deeplens_config.json")) if os.path.exists("deeplens_config.json") else None,
    }
    with open("HEARTBEAT.part", "w") as out:
        json.dump(seen, out)
    os.rename("HEARTBEAT.part", "HEARTBEAT")
    print("stand-in function running", flush=True)
    while True:
        time.sleep(1)
    """
).replace("HEARTBEAT", HEARTBEAT)


@pytest.fixture(autouse=True)
def _needs_namespaces() -> None:
    reason = namespace_unavailable()
    if reason:
        pytest.skip(f"the simulated DeepLens needs user + mount namespaces: {reason}")


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    """The stand-in function's report, once written."""
    return json.loads(path.read_text()) if path.exists() else None
