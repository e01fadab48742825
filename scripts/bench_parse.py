"""Benchmark: what parsing the DAG file costs the DAG processor, against the Amazon provider's example.

MWAA's DAG processor parses every DAG file again and again (every 30 s by default), each time in a
child forked from its manager: the child imports the file (``DagBag``: ``exec_module`` under a
module name of its own, which builds the DAG and bags it), serialises the DAG for the scheduler
(``DagSerialization.to_dict``) and exits. This script does the same with Airflow's own functions,
in children forked from a manager of its own (a fresh interpreter per mode), for

  ours      dags/deeplens_object_detection.py
  baseline  scripts/bench_parse_baseline/example_sagemaker.py: a DAG built like the Amazon
            provider's system test example_sagemaker (its imports, operators, sensors and tasks)

alternating the two, ``--runs`` parses each, each in a fresh child. The manager holds what a parse
child holds whatever the file: ``airflow.sdk`` and the parsing machinery (warmed on a trivial DAG,
so the machinery's own lazy imports, the same for every file, are left out), frozen for the garbage
collector (``gc.freeze()``, as the processor's manager does). One unmeasured parse of each file
first fills the bytecode cache (as an installed environment has it; the cache is a temporary
folder, not the tree). Mode ``cold`` measures from there; mode ``pre-import`` first imports the
``airflow.*`` modules the file names, as the manager does before it forks
(``[dag_processor] parsing_pre_import_modules``, on by default) and keeps them: in steady state a
file pays nothing for them. Modules outside ``airflow.*`` (our plugin package, and whatever it
imports) are never pre-imported.

Printed, per mode and file: the median and the range (lowest to highest) of the CPU seconds of
  import     DagBag: the file imported, the DAG built and checked
  serialise  the DAG serialised as the processor sends it
  total      both: one parse
and the ratio ours / baseline of the medians. CPU time is the figure to read: it is what a parse
costs the environment; on a busy machine wall time mostly measures the other processes (its median
is printed too). Goal: ours at most the baseline, ideally half.

    .venv/bin/python scripts/bench_parse.py [--runs 10] [--modes cold,pre-import]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "dags" / "deeplens_object_detection.py"
BASELINE = ROOT / "scripts" / "bench_parse_baseline" / "example_sagemaker.py"
MODES = ("cold", "pre-import")
PHASES = ("import", "serialise", "total")
# Reported when the file's parse imports them: what a cheap parse must not load.
WATCHED = ("boto3", "botocore", "s3transfer", "PIL", "label_studio_sdk", "jsonschema", "mxnet")

WARMUP_DAG = """
from datetime import datetime

from airflow.sdk import DAG, BaseOperator

with DAG(dag_id="warmup", schedule=None, start_date=datetime(2026, 1, 1)):
    BaseOperator(task_id="nothing")
"""

# One manager per mode: a fresh interpreter with what the DAG processor's manager has (airflow.sdk,
# the parsing machinery, warmed on a trivial DAG) forks one child per parse, as the processor does.
# argv = [{name: dag file}, mode, runs, warm-up DAG file]; one JSON line per parse on stdout.
MANAGER = textwrap.dedent(
    """
    import gc, json, os, sys, time
    from pathlib import Path

    import airflow.sdk  # every parse process has it before it reads a DAG file
    import structlog
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.dag_processing.processor import _pre_import_airflow_modules, _serialize_dags
    from airflow.utils.dag_version_inflation_checker import check_dag_file_stability

    log = structlog.get_logger("bench_parse")
    files, mode, runs, warmup = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])


    def parse(file):
        check_dag_file_stability(str(file))
        return BundleDagBag(
            dag_folder=str(file), bundle_path=file.parent, bundle_name="bench", load_op_links=False
        )


    def child(path):
        if mode == "pre-import":
            _pre_import_airflow_modules(str(path), log)  # what the manager imports before it forks
        before = set(sys.modules)
        c0 = time.process_time(); w0 = time.perf_counter()
        bag = parse(path)
        c1 = time.process_time(); w1 = time.perf_counter()
        serialized, errors = _serialize_dags(bag, log)
        c2 = time.process_time(); w2 = time.perf_counter()
        new = {m.split(".")[0] for m in set(sys.modules) - before}
        return {
            "cpu": {"import": c1 - c0, "serialise": c2 - c1, "total": c2 - c0},
            "wall": {"import": w1 - w0, "serialise": w2 - w1, "total": w2 - w0},
            "dags": len(serialized),
            "errors": {**bag.import_errors, **errors},
            "modules": len(set(sys.modules) - before),
            "watched": sorted(new & set(WATCHED)),
        }


    def measure(path):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                result = child(path)
            except BaseException as exc:
                result = {"failed": repr(exc)}
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(result))
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            text = pipe.read()
        os.waitpid(pid, 0)
        return json.loads(text)


    # The machinery's own lazy imports are the same for every file: the children inherit them.
    _serialize_dags(parse(warmup), log)
    gc.freeze()  # as the processor's manager does before its parsing loop (no copy-on-write, no GC of it)
    names = list(files)
    for name in names:  # one parse each, not measured: compiles the files' modules to the bytecode cache
        measure(Path(files[name]))
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            print("BENCH_PARSE " + json.dumps({"file": name, **measure(Path(files[name]))}), flush=True)
    """
)


def run_mode(files: dict[str, Path], mode: str, runs: int, warmup: Path, env: dict[str, str]) -> dict:
    """Parse each file ``runs`` times (alternating) in children of one fresh manager; their results."""
    code = f"WATCHED = {WATCHED!r}\n{MANAGER}"
    argv = [json.dumps({k: str(v) for k, v in files.items()}), mode, str(runs), str(warmup)]
    results: dict[str, list[dict]] = {name: [] for name in files}
    with (
        tempfile.TemporaryFile("w+") as log,
        subprocess.Popen(
            [sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=log, text=True, env=env
        ) as manager,
    ):
        assert manager.stdout is not None
        for line in manager.stdout:
            if not line.startswith("BENCH_PARSE "):
                continue
            result = json.loads(line.removeprefix("BENCH_PARSE "))
            name = result["file"]
            if "failed" in result or result["errors"] or result["dags"] != 1:
                manager.kill()
                raise SystemExit(f"parsing {files[name]} failed: {result}")
            results[name].append(result)
            done = sum(len(r) for r in results.values())
            print(f"\r  {mode}: {done}/{runs * len(files)} parses", end="", file=sys.stderr, flush=True)
        manager.wait()
        log.seek(0)
        errors = log.read()
    print("\r", end="", file=sys.stderr)
    if manager.returncode or any(len(r) != runs for r in results.values()):
        raise SystemExit(f"the {mode} manager failed (exit {manager.returncode}):\n{errors[-3000:]}")
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f} s  ({min(values):.3f} to {max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="processes per file and mode (default 10)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default both)"
    )
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES) or args.runs < 1:
        parser.error(f"--modes takes {', '.join(MODES)}; --runs at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        warmup = Path(tmp) / "warmup" / "warmup_dag.py"
        warmup.parent.mkdir()
        warmup.write_text(WARMUP_DAG)
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            # As on MWAA: the plugins folder (plugins.zip: deeplens_pipeline, model_fix) is on sys.path.
            "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]),
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Modules load from compiled bytecode, as in an installed environment (kept out of the tree).
            "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
        }
        files = {"ours": OURS, "baseline": BASELINE}
        print(f"{args.runs} fresh processes per file and mode, alternating; CPU seconds, median (range)")
        print(f"  ours:     {OURS.relative_to(ROOT)}\n  baseline: {BASELINE.relative_to(ROOT)}")
        for mode in modes:
            runs = run_mode(files, mode, args.runs, warmup, env)
            print(f"\nmode {mode}:")
            medians: dict[str, dict[str, float]] = {}
            for name in files:
                cpu = {phase: [r["cpu"][phase] for r in runs[name]] for phase in PHASES}
                wall = statistics.median(r["wall"]["total"] for r in runs[name])
                medians[name] = {phase: statistics.median(values) for phase, values in cpu.items()}
                watched = sorted({m for r in runs[name] for m in r["watched"]})
                print(
                    f"  {name:<9} "
                    + "   ".join(f"{phase} {spread(cpu[phase])}" for phase in PHASES)
                    + f"   [wall total {wall:.3f} s; {runs[name][0]['modules']} modules imported"
                    + (f", incl. {', '.join(watched)}]" if watched else "]")
                )
            ratios = "   ".join(
                f"{phase} {medians['ours'][phase] / medians['baseline'][phase]:.2f}" for phase in PHASES
            )
            print(f"  ours / baseline: {ratios}   (goal: total <= 1, ideally <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
