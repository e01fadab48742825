"""The package log: silent without logging, ordinary records once logging is in use."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from model_fix.log import INFO, WARNING, log

ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "include")}


def test_levels_are_loggings() -> None:
    assert (INFO, WARNING) == (logging.INFO, logging.WARNING)


def test_records_reach_the_applications_handlers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="model_fix"):
        log("model_fix.fix", WARNING, "%s is odd", "x")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("model_fix.fix", logging.WARNING, "x is odd")
    ]
    handlers = logging.getLogger("model_fix").handlers
    assert sum(isinstance(h, logging.NullHandler) for h in handlers) == 1


def test_an_unconfigured_application_sees_nothing_on_stderr() -> None:
    code = "import logging; from model_fix.log import log; log('model_fix.fix', 30, 'hidden')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV)
    assert out.stderr == ""


def test_fixing_a_model_loads_no_heavy_modules() -> None:
    """Start-up cost: a folder fix needs neither logging, dataclasses, shutil nor tarfile."""
    code = (
        "import sys; from model_fix import fix_model; import model_fix.fix; "
        "print(sorted({'logging', 'dataclasses', 'inspect', 'shutil', 'tarfile'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV)
    assert out.stdout.strip() == "[]"
