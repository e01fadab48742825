"""Reject kinds, their exception and the decode limits (pure Python, no Pillow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplens_pipeline.images.rejects import REJECT_KINDS, DecodeLimits, ImageRejected

REPO = Path(__file__).resolve().parents[3]


def test_a_reject_reads_kind_colon_detail():
    rejected = ImageRejected("truncated", "image file is truncated")
    assert (rejected.kind, rejected.reason) == ("truncated", "truncated: image file is truncated")
    assert REJECT_KINDS[0] == "decompression-bomb"  # the worst first


def test_unknown_reject_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown reject kind"):
        ImageRejected("bad-vibes", "x")


@pytest.mark.parametrize("kwargs", [{"max_aspect": 0.5}, {"memory_mb": 0}, {"min_side": 0}])
def test_decode_limits_are_checked(kwargs):
    with pytest.raises(ValueError, match="invalid decode limits"):
        DecodeLimits(**kwargs)


def test_the_airflow_side_imports_no_image_library():
    """The DAG file is parsed often on MWAA: the operators module must not load Pillow."""
    probe = (
        "import sys, deeplens_pipeline.operators.images, deeplens_pipeline.images.collect;"
        "print(sorted(m for m in ('PIL', 'PIL.Image', 'pillow_heif') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'plugins'}:{REPO / 'include'}")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
