"""Benchmark (not a test): the model fix against deploy.py's way, MXNet's checkpoint round trip.

Run in the ML tools environment (it needs mxnet to build the artefact and for the baseline; about 10 s)::

    cd /work/main && PYTHONPATH=include .venv-ml/bin/python tests/model_fix/bench_model_fix.py

It builds a full-size resnet-50 SSD-512 artefact from the real SageMaker training graph (shapes
inferred by MXNet at 512x512, random weights), then runs, each in a fresh process, (1) MXNet's
``load_checkpoint`` + ``save_checkpoint`` of the same model (what deploy.py did, minus
rebuilding the symbol) and (2) :func:`model_fix.fix_model`, and prints the whole-process wall
time (what a user of deploy.py waits for, mxnet's import included), the in-process time of the
conversion alone, peak resident memory, and the ratios. Peak memory of the fix is also shown
for a params file about twice the size, to show it does not grow with the params size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURE = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "fixtures"
    / "sagemaker-model"
    / "model_algo_1-symbol.json"
)
INCLUDE = Path(__file__).resolve().parents[2] / "include"
RUNS = 3

BASELINE = """
import sys, time
import mxnet as mx
start = time.perf_counter()
sym, args, aux = mx.model.load_checkpoint(sys.argv[1], 0)
mx.model.save_checkpoint(sys.argv[2], 0, sym, args, aux)
elapsed = time.perf_counter() - start
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(elapsed, hwm)
"""

FIX = """
import sys, time
start = time.perf_counter()
from model_fix import fix_model
fix_model(sys.argv[1], sys.argv[2])
elapsed = time.perf_counter() - start
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(elapsed, hwm)
"""


def build_artefact(folder: Path, image_shape: int = 512) -> Path:
    """``model_algo_1-symbol.json`` and ``-0000.params`` with the real graph's full-size weights."""
    import mxnet as mx
    import numpy as np

    shutil.copyfile(FIXTURE, folder / "model_algo_1-symbol.json")
    sym = mx.sym.load(str(FIXTURE))
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, image_shape, image_shape), label=(1, 1, 6))
    rng = np.random.default_rng(0)
    params = {
        f"arg:{name}": mx.nd.array(rng.standard_normal(shape, dtype=np.float32))
        for name, shape in zip(sym.list_arguments(), arg_shapes, strict=True)
        if name not in ("data", "label")
    }
    params.update(
        {
            f"aux:{name}": mx.nd.array(rng.random(shape, dtype=np.float32))
            for name, shape in zip(sym.list_auxiliary_states(), aux_shapes, strict=True)
        }
    )
    mx.nd.save(str(folder / "model_algo_1-0000.params"), params)
    (folder / "hyperparams.json").write_text(
        json.dumps({"num_classes": "1", "image_shape": str(image_shape)})
    )
    return folder / "model_algo_1"


def run(code: str, *args: str) -> tuple[float, float, int]:
    """Whole-process wall seconds, in-process seconds and peak RSS (KiB) of a fresh Python process.

    Peak RSS is the child's VmHWM: ``ru_maxrss`` would carry the parent's peak across ``exec``.
    """
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(INCLUDE), "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    return time.perf_counter() - started, float(out[-2]), int(out[-1])


def best(code: str, *args: str) -> tuple[float, float, int]:
    results = [run(code, *args) for _ in range(RUNS)]
    return min(r[0] for r in results), min(r[1] for r in results), max(r[2] for r in results)


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        model = work_dir / "model"
        model.mkdir()
        prefix = build_artefact(model)
        size = (model / "model_algo_1-0000.params").stat().st_size
        (work_dir / "mx").mkdir()
        mx_proc, mx_time, mx_rss = best(BASELINE, str(prefix), str(work_dir / "mx" / "deploy_model_algo_1"))
        fix_proc, fix_time, fix_rss = best(FIX, str(prefix), str(work_dir / "fixed"))
        print(f"resnet-50 SSD-512 artefact: params {size / 2**20:.1f} MiB, best of {RUNS} runs")
        print("                               whole process   in-process   peak RSS")
        print(
            f"  mxnet load+save checkpoint : {mx_proc * 1000:9.0f} ms {mx_time * 1000:9.1f} ms"
            f" {mx_rss / 1024:7.1f} MiB"
        )
        print(
            f"  model_fix.fix_model        : {fix_proc * 1000:9.0f} ms {fix_time * 1000:9.1f} ms"
            f" {fix_rss / 1024:7.1f} MiB"
        )
        print(
            f"  ratio (mxnet / model_fix)  : {mx_proc / fix_proc:9.1f} x  {mx_time / fix_time:9.1f} x"
            f" {mx_rss / fix_rss:7.1f} x"
        )
        print("  (in-process, both are bound by writing the params again; the fix's copy is the kernel's)")
        # Same graph, params about twice as large (trailing dimensions doubled).
        doubled = work_dir / "doubled"
        doubled.mkdir()
        shutil.copyfile(model / "model_algo_1-symbol.json", doubled / "model_algo_1-symbol.json")
        _double_params(model / "model_algo_1-0000.params", doubled / "model_algo_1-0000.params")
        big = (doubled / "model_algo_1-0000.params").stat().st_size
        _, _, big_rss = best(FIX, str(doubled / "model_algo_1"), str(work_dir / "fixed-doubled"))
        print(
            f"  fix peak RSS with params {big / 2**20:.1f} MiB: {big_rss / 1024:.1f} MiB "
            f"(vs {fix_rss / 1024:.1f} MiB at {size / 2**20:.1f} MiB)"
        )


def _double_params(source: Path, destination: Path) -> None:
    """Rewrite ``source`` with every multi-dimensional tensor's last dimension doubled."""
    import mxnet as mx

    loaded = mx.nd.load(str(source))
    # Keep names and leading dimensions (the fix checks them).
    grown = {}
    for key, array in loaded.items():
        shape = array.shape
        grown[key] = mx.nd.zeros((*shape[:-1], shape[-1] * 2) if len(shape) > 1 else shape)
    mx.nd.save(str(destination), grown)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark total {time.perf_counter() - started:.1f} s)")
