"""Run the whole DAG on the embedded emulator and print its summary (what ``make demo`` does).

1. generate the sample dataset (photos of a few classes, with their answer key);
2. start the emulator (moto server + extension) as a subprocess on a free 127.0.0.1 port and seed
   it: bucket, roles, private work team, a registered DeepLens (a Greengrass V2 core device); with
   ``--labeling label-studio`` (the default) also start a real Label Studio server (``.venv-ls``)
   and a simulated annotator that draws the answer key's boxes through Label Studio's API;
3. point the Airflow connection ``aws_deeplens`` at it (``endpoint_url`` in its extra), create a
   local Airflow home, and run ``deeplens_object_detection`` with ``dag.test()`` — real operators,
   real deferral (triggers run in-process), real Params validation;
4. the deploy step (``greengrass-v2``, the default method) reaches a simulated DeepLens started in
   step 2 (``emulator.simulated_deeplens.connected``: mosquitto, the Greengrass IPC, the device's
   Greengrass V2 core taking the deployment): the unmodified inference function runs on the model
   the run trained, its camera serving fresh sample photos;
5. watch the device for a few seconds (``deeplens_pipeline.device_watch.watch``: its detections on
   the thing's ``infer`` topic and its annotated MJPEG frames, saved under the work folder);
6. print the run's summary (which the DAG's last task also writes to the log), what the device
   showed, and the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "deeplens_object_detection"
CONN_ID = "aws_deeplens"
LABEL_STUDIO_CONN_ID = "label_studio_default"


def start_emulator(work: Path, env: dict[str, str], timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start ``python -m emulator.server`` in the background; return the process and its URL."""
    url_file = work / "emulator.url"
    url_file.unlink(missing_ok=True)
    log = (work / "emulator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator.server", "--url-file", str(url_file)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + timeout
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the emulator did not start; see {work / 'emulator.log'}")
        time.sleep(0.1)
    return process, url_file.read_text().strip()


def airflow_env(work: Path, endpoint_url: str, region: str) -> dict[str, str]:
    """Environment of a throwaway local Airflow that reaches the emulator through one connection."""
    home = work / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    connection = {
        "conn_type": "aws",
        "login": "emulator",
        "password": "emulator",
        "extra": {"endpoint_url": endpoint_url, "region_name": region},
    }
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection),
        "AWS_ACCESS_KEY_ID": "emulator",
        "AWS_SECRET_ACCESS_KEY": "emulator",
        "AWS_DEFAULT_REGION": region,
        # Fixed, so the demo can name its Label Studio project before the run creates it.
        "DEEPLENS_ENVIRONMENT": "demo",
    }


def run_conf(
    account: Any, images_dir: Path, mode: str, classes: list[str], labeling: str = "label-studio"
) -> dict[str, Any]:
    """The demo's trigger parameters: the seeded account, the seed's hyperparameters at 300 px."""
    return {
        **account.as_params(),
        "labeling_backend": labeling,
        "image_source": str(images_dir),
        "classes": classes,
        "training_mode": mode,
        "image_shape": 300,
        "tuning_max_jobs": 2,
        "poll_seconds": 2,
        "labeling_timeout_days": 0.01,
        "max_runtime_hours": 0.5,
    }


def start_labelling(
    stack: contextlib.ExitStack, work: Path, endpoint_url: str, dataset: Path, bucket: str, by_hand: bool
) -> dict[str, Any]:
    """Start a real Label Studio server (``.venv-ls``), point the DAG's connection at it, and
    start the simulated annotator (unless ``by_hand``); return the run's labelling Params."""
    from deeplens_pipeline.label_studio import project_title
    from emulator.extension.groundtruth import load_answer_keys
    from emulator.label_studio_annotator import AnnotatorThread, s3_client_for
    from emulator.label_studio_server import start_label_studio

    started = time.monotonic()
    server = stack.enter_context(start_label_studio(work / "label-studio"))
    print(
        f"Label Studio serving on {server.url} in {time.monotonic() - started:.0f} s (log: {server.log_path})"
    )
    storage = {
        "s3_endpoint": endpoint_url,
        "aws_access_key_id": "emulator",
        "aws_secret_access_key": "emulator",
    }
    os.environ[f"AIRFLOW_CONN_{LABEL_STUDIO_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "http", "host": server.url, "password": server.token, "extra": storage}
    )
    title = project_title(os.environ["DEEPLENS_ENVIRONMENT"], DAG_ID, bucket, "input/")
    if by_hand:
        print(
            f"Label by hand: open {server.url} (user {server.username}, password {server.password}); "
            f"the run creates the project {title!r} and waits for your boxes (up to 6 hours)."
        )
        return {"labeling_timeout_days": 0.25}
    annotator = AnnotatorThread(
        server.url,
        server.token,
        s3_client=s3_client_for(endpoint_url),
        answers=load_answer_keys((dataset / "answer_key.json",)),
        title_prefix=title,
        delay_seconds=2,
    )
    annotator.start()
    stack.callback(annotator.stop)
    print(f"Simulated annotator labelling project {title!r} through Label Studio's API")
    return {}


def task_state(task_id: str, run_id: str, map_index: int) -> str:
    """A task instance's state in the demo's Airflow database."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == DAG_ID,
                TaskInstance.task_id == task_id,
                TaskInstance.run_id == run_id,
                TaskInstance.map_index == map_index,
            )
        )
    return str(getattr(state, "value", state))


def run_dag(conf: dict[str, Any]) -> dict[str, Any]:
    """Run the DAG once in this process with ``dag.test``; return task states and the summary."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # before Airflow 3.2 (MWAA 3.0.6, 2.11)
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"the DAG does not import: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    run = dag.test(run_conf=conf)
    states = {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
        for ti in run.get_task_instances()
    }
    summary_ti = run.get_task_instance("summary")
    summary = summary_ti.xcom_pull(task_ids="summary") if summary_ti is not None else None
    return {"state": str(run.state), "run_id": run.run_id, "tasks": states, "summary": summary}


WORK_MARKER = ".deeplens-work"
"""Written into a work folder this project made: only such a folder (or an empty one) is emptied."""


def fresh_work_dir(path: Path) -> Path:
    """Empty ``path`` for a new run and mark it as ours; refuse a folder with other content.

    ``--work-dir`` is emptied first: a folder that is neither empty, nor marked as one of ours, nor
    inside the checkout (``.demo``, ``.local-airflow``) is refused, naming it (a typo such as
    ``--work-dir ~``), and nothing is deleted.
    """
    work = path.resolve()
    ours = (work / WORK_MARKER).exists() or (work.is_relative_to(REPO_ROOT) and work != REPO_ROOT)
    if work.exists() and any(work.iterdir()) and not ours:
        raise SystemExit(
            f"--work-dir {work}: not empty and not a work folder of this project (no {WORK_MARKER}); "
            "give a new or empty folder"
        )
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / WORK_MARKER).write_text("made by scripts/demo.py or scripts/local_airflow.py; emptied by them\n")
    return work


CAMERA_IMAGES = 6
"""Fresh sample photos (another seed than the training set's) the simulated camera serves."""
FIFO_WAIT_SECONDS = 60.0
FRAME_EVERY = 10
"""Save one distinct frame in 10 (the watcher already skips the display's repeats of a frame)."""


def start_simulated_device(
    stack: contextlib.ExitStack, work: Path, endpoint_url: str, region: str, account: Any, classes: list[str]
) -> Any:
    """Start the simulated DeepLens (the seeded thing, a Greengrass V2 core with the deployment
    agent) with a camera of fresh sample photos; ``None`` with the reason printed when it cannot run."""
    from emulator.mqtt_broker import BrokerUnavailable
    from emulator.sample_dataset import generate_sample_dataset
    from emulator.simulated_deeplens.connected import connected_deeplens

    camera = generate_sample_dataset(work / "camera", n_images=CAMERA_IMAGES, classes=classes, seed=999)
    try:
        deeplens = stack.enter_context(
            connected_deeplens(
                work / "device" / "root",
                camera_frames=camera / "images",
                thing_name=account.thing_name,
                region=region,
                emulator_url=endpoint_url,
                role_alias=account.role_alias,
            )
        )
    except (BrokerUnavailable, RuntimeError, FileNotFoundError) as exc:
        print(f"No simulated DeepLens ({exc}): the emulator completes the deployment without a device")
        return None
    print(
        f"Simulated DeepLens {account.thing_name} running (root {work / 'device' / 'root'}, "
        f"broker mqtt://{deeplens.broker_host}:{deeplens.broker_port})"
    )
    return deeplens


def watch_device(deeplens: Any, frames_dir: Path, seconds: float) -> dict[str, Any]:
    """Watch the device's topic and MJPEG stream for ``seconds``; the watch summary as a dict."""
    from deeplens_pipeline.device_watch import WatchSettings, watch

    fifo = deeplens.mjpeg_fifo
    deadline = time.monotonic() + FIFO_WAIT_SECONDS
    while not fifo.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    settings = WatchSettings(
        thing=deeplens.thing_name,
        endpoint=deeplens.broker_host,
        port=deeplens.broker_port,
        plain=True,
        seconds=seconds,
        frames_from=str(fifo) if fifo.exists() else None,
        save_frames=frames_dir,
        frame_every=FRAME_EVERY,
    )
    with open(os.devnull, "w") as quiet:
        summary = watch(settings, out=quiet).as_dict()
    summary["seconds"] = seconds
    return summary


def main(argv: list[str] | None = None) -> int:
    """``make demo``: generate, emulate, run, summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["train", "tune"], default="train", help="training branch")
    parser.add_argument(
        "--training",
        choices=["fast", "train"],
        default="train",
        help="emulated training: 'train' really trains, 'fast' builds an untrained model",
    )
    parser.add_argument(
        "--labeling",
        choices=["label-studio", "ground-truth", "none"],
        default="label-studio",
        help="labelling backend: a real Label Studio server (default), the emulated Ground Truth, or none",
    )
    parser.add_argument(
        "--label-by-hand",
        action="store_true",
        help="with label-studio: no simulated annotator; print the project's URL and wait for you",
    )
    parser.add_argument("--images", type=int, default=60, help="sample photos to generate")
    parser.add_argument("--train-seconds", type=int, help="CPU budget of each emulated training job")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".demo")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    parser.add_argument(
        "--watch-seconds", type=float, default=8.0, help="how long to watch the simulated DeepLens at the end"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    from deeplens_pipeline.summary import format_summary
    from emulator.aws_calls import record_calls
    from emulator.demo_output import TaskProgress, format_device_watch, output_to_file
    from emulator.sample_dataset import generate_sample_dataset
    from emulator.seed import seed_demo_account

    work = fresh_work_dir(args.work_dir)
    dataset = generate_sample_dataset(work / "dataset", n_images=args.images)
    classes = json.loads((dataset / "answer_key.json").read_text())["classes"]
    print(f"Generated {args.images} sample photos in {dataset}")

    region = "us-east-1"
    emulator_env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "include"), str(REPO_ROOT / "plugins")]),
        EMULATOR_WORK_DIR=str(work / "emulator"),
        EMULATOR_ANSWER_KEYS=str(dataset / "answer_key.json"),
        EMULATOR_TRAINING_MODE=args.training,
        # Each emulated training job's CPU budget: the tuning branch runs two of them.
        EMULATOR_TRAINING_MAX_SECONDS=str(args.train_seconds or (240 if args.mode == "train" else 120)),
        EMULATOR_LABELING_DELAY_SECONDS="3",
        AWS_ACCESS_KEY_ID="emulator",
        AWS_SECRET_ACCESS_KEY="emulator",
    )
    emulator, url = start_emulator(work, emulator_env)
    labelling = contextlib.ExitStack()  # Label Studio, the annotator and the simulated DeepLens
    try:
        print(f"Emulator serving on {url} (log: {work / 'emulator.log'})")
        os.environ.update(airflow_env(work, url, region))
        account = seed_demo_account(url, region=region)
        print(
            f"Seeded: bucket {account.bucket}, device {account.thing_name}, workteam {account.workteam_arn}"
        )
        conf = run_conf(account, dataset / "images", args.mode, classes, args.labeling)
        if args.labeling == "label-studio":
            conf.update(start_labelling(labelling, work, url, dataset, account.bucket, args.label_by_hand))
        deeplens = start_simulated_device(labelling, work, url, region, account, classes)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=os.environ,
        )
        log_path = work / "airflow-run.log"
        print(f"Running {DAG_ID}; Airflow's full log: {log_path}")
        # record_calls: what the DAG itself asks of AWS (the IAM policies' proof).
        with record_calls() as recorder, output_to_file(log_path) as terminal:
            progress = TaskProgress(log_path, terminal, task_state)
            progress.start()
            try:
                result = run_dag(conf)
            finally:
                progress.stop()
        result["aws_calls"] = sorted(recorder.calls)
        if deeplens is not None and result["state"] == "success":
            print(
                f"Watching {deeplens.infer_topic} and the device's MJPEG stream for {args.watch_seconds:g} s"
            )
            result["device_watch"] = watch_device(deeplens, work / "device-frames", args.watch_seconds)
    finally:
        labelling.close()
        emulator.terminate()
        emulator.wait(timeout=30)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print()
    print(f"DAG run {result['run_id']}: {result['state']}")
    failed = {t: s for t, s in result["tasks"].items() if s not in ("success", "skipped")}
    for task_id, state in sorted(failed.items()):
        print(f"  {task_id:<40} {state}  (see {work / 'airflow-run.log'})")
    if result["summary"]:
        print()
        print(format_summary(result["summary"]))
    if result.get("device_watch"):
        print()
        print(format_device_watch(result["device_watch"], untrained=args.training == "fast"))
    print(f"\nWall time: {result['wall_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
