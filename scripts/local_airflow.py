"""Run the DAG in a local Airflow 3.3.1, as a user's own installation runs it, against the emulator.

    .venv/bin/python scripts/local_airflow.py run [--work-dir .local-airflow] [--images 16]
        [--training fast|train] [--labeling label-studio|ground-truth|none] [--keep-running]

Not ``dag.test()``: Airflow's four services, each its own process (``api-server``, ``dag-processor``,
``scheduler``, ``triggerer``), LocalExecutor task processes, and the REST API:

1. generate the sample dataset; start the emulator (``python -m emulator.server``, its own process)
   and seed it as ``make demo`` does (bucket, roles, work team, a registered DeepLens);
2. write an ``AIRFLOW_HOME`` under the work folder (SQLite, ``PYTHONPATH=plugins:include``), migrate
   its database and add the connection ``aws_deeplens`` with ``airflow connections add``: the
   emulator's ``endpoint_url`` and dummy keys (botocore signs every request and raises
   ``NoCredentialsError`` without keys, even for an ``endpoint_url``; the emulator accepts any);
   with ``--labeling label-studio``, also a real Label Studio server and ``label_studio_default``;
3. start the four services, wait for the DAG to be parsed, unpause it (new DAGs start paused),
   trigger a run with the conf through the REST API, print one line per task state change;
4. print the summary task's XCom, which deferred tasks the triggerer ran (from its log), and stop
   everything, or with ``--keep-running`` print the UI's URL and wait for Ctrl-C.

``--json FILE`` writes the outcome (states, tries, deferrals, summary, timings) for the test.

    .venv/bin/python scripts/local_airflow.py new-photos [--photos 10] [--burst 10] [--during 0] \
        [--min-new-photos 1] [--json FILE]

New photos start runs by themselves: the same stack, but nobody triggers a run. It runs the setup
command (``python -m deeplens_pipeline.new_photos_setup``: queue, queue policy, bucket notification)
against the emulator, twice (the second changes nothing), starts Airflow with
``DEEPLENS_NEW_PHOTOS_QUEUE_URL`` set (the DAG is scheduled on the asset the SQS watcher updates)
and ``DEEPLENS_RUN_DEFAULTS`` holding the run's Params (an asset-triggered run gets only the
defaults), uploads ``--photos`` photos to ``s3://<bucket>/incoming/`` with boto3, and follows the
run that starts (``asset_triggered``); then uploads ``--burst`` photos at once and follows the one
run they start. With ``--min-new-photos`` above ``--photos``, the first run keeps the current model
and the burst's run labels and trains on both uploads. ``--during`` photos are uploaded once the
burst's run has listed its own; the run after it takes them. The JSON names each phase's runs, their
asset events and the queue at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from emulator.local_airflow import (  # noqa: E402
    DAG_ID,
    SERVICES,
    AirflowStackError,
    LocalAirflow,
    free_port,
)

CONN_ID = "aws_deeplens"
LABEL_STUDIO_CONN_ID = "label_studio_default"
REGION = "us-east-1"
DUMMY_KEYS = {"login": "emulator", "password": "emulator"}
"""The emulator accepts any keys, but botocore will not send an unsigned request."""
ENVIRONMENT_ID = "local-airflow"
POLL_SECONDS = 10
"""The run's status-check interval. Every trigger waits this long before its first poll; below some
10 s a busy machine can resume a task before the scheduler has drained the executor's "success" for
the attempt that deferred, and Airflow 3.3.1 then fails the resumed attempt (apache/airflow#72716)."""


def emulator_environment(work: Path, dataset: Path, training: str) -> dict[str, str]:
    """The emulator process's environment (its settings are ``EMULATOR_*`` variables)."""
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
        EMULATOR_WORK_DIR=str(work / "emulator"),
        EMULATOR_ANSWER_KEYS=str(dataset / "answer_key.json"),
        EMULATOR_TRAINING_MODE=training,
        EMULATOR_LABELING_DELAY_SECONDS="3",
        AWS_ACCESS_KEY_ID=DUMMY_KEYS["login"],
        AWS_SECRET_ACCESS_KEY=DUMMY_KEYS["password"],
    )


def aws_connection(endpoint_url: str) -> dict[str, Any]:
    """The ``aws_deeplens`` connection for the emulator (real AWS: no endpoint_url, real credentials)."""
    return {
        "conn_type": "aws",
        **DUMMY_KEYS,
        "extra": {"endpoint_url": endpoint_url, "region_name": REGION},
    }


def add_connection(stack: LocalAirflow, conn_id: str, connection: dict[str, Any]) -> None:
    """``airflow connections add`` (the metadata database, as a user would; visible in the UI)."""
    stack.run("connections", "add", conn_id, "--conn-json", json.dumps(connection))


def label_studio_connection(
    labelling: contextlib.ExitStack, work: Path, endpoint_url: str, dataset: Path, bucket: str
) -> dict[str, Any]:
    """Start Label Studio and the simulated annotator as the demo does; its connection, as JSON."""
    from emulator.demo import start_labelling

    os.environ["DEEPLENS_ENVIRONMENT"] = ENVIRONMENT_ID  # the project's title hashes it
    start_labelling(labelling, work, endpoint_url, dataset, bucket, by_hand=False)
    return json.loads(os.environ.pop(f"AIRFLOW_CONN_{LABEL_STUDIO_CONN_ID.upper()}"))


@dataclass
class RunWatch:
    """One line per task state change of one run; what each task went through."""

    stack: LocalAirflow
    run_id: str
    started: float = field(default_factory=time.monotonic)
    seen: dict[str, list[str]] = field(default_factory=dict)
    current: dict[str, dict[str, Any]] = field(default_factory=dict)

    def poll(self) -> None:
        current = {}
        for ti in self.stack.task_instances(self.run_id):
            name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
            state = ti["state"] or "none"
            current[name] = {"state": state, "try_number": ti["try_number"]}
            history = self.seen.setdefault(name, [])
            if (history and history[-1] != state) or (not history and state != "none"):
                history.append(state)
                elapsed = time.monotonic() - self.started
                print(f"  {elapsed:6.0f}s  {name:<40} {state}  (try {ti['try_number']})", flush=True)
        self.current = current  # a mapped task's placeholder ([-1]) gives way to its instances

    def follow(
        self, timeout: float, on_poll: Callable[[dict[str, dict[str, Any]]], None] | None = None
    ) -> dict[str, Any]:
        """Poll until the run ends (``on_poll`` sees the task states at each poll); the run as the
        API last showed it."""
        quoted = urllib.parse.quote(self.run_id, safe="")

        def finished() -> dict[str, Any] | None:
            self.poll()
            if on_poll is not None:
                on_poll(self.current)
            run = self.stack.api_ok("GET", f"/dags/{DAG_ID}/dagRuns/{quoted}")
            return run if run["state"] in ("success", "failed") else None

        run = self.stack.wait_for(f"the run {self.run_id}", finished, timeout)
        self.poll()
        return run


def triggerer_runs(log_folder: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """What the triggerer did for each task of ``run_id``, from the trigger logs it writes beside the
    task's (``attempt=<try>.log.trigger.<triggerer job id>.log``): trigger started, event, completed."""
    found: dict[str, dict[str, Any]] = {}
    run_dir = log_folder / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    for path in sorted(run_dir.glob("task_id=*/**/attempt=*.log.trigger.*.log")):
        task = path.relative_to(run_dir).parts[0].removeprefix("task_id=")
        record: dict[str, Any] = {"log": str(path), "triggerer_job": int(path.name.rsplit(".", 2)[-2])}
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line).get("event", "")
                if event.startswith("trigger ") and event.endswith(" starting"):
                    record["started"] = event.removeprefix("trigger ").removesuffix(" starting")
                elif event == "Trigger fired event":
                    record["event"] = json.loads(line).get("result")
                elif event == "trigger completed":
                    record["completed"] = True
        found[task] = record
    return found


def triggerer_jobs(stack: LocalAirflow) -> list[int]:
    """The ids of the triggerer jobs Airflow knows (``/jobs``): the process started here."""
    jobs = stack.api_ok("GET", "/jobs?job_type=TriggererJob")["jobs"]
    return sorted(job["id"] for job in jobs)


def start_airflow(stack: LocalAirflow, connections: dict[str, dict[str, Any]], timeout: float) -> None:
    """Database, connections, the four services; wait for the DAG, check it is paused, unpause it."""
    stack.run("db", "migrate")
    for conn_id, connection in connections.items():
        add_connection(stack, conn_id, connection)
    for service in SERVICES:
        stack.spawn_service(service)
    details = stack.wait_for_dag(timeout)
    print(f"Airflow serving on {stack.url}; {DAG_ID} parsed (paused: {details['is_paused']})")
    if details["is_paused"]:
        stack.api_ok("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
        print(f"Unpaused {DAG_ID} (new DAGs start paused)")


def trigger_run(stack: LocalAirflow, conf: dict[str, Any]) -> str:
    """POST a DAG run with ``conf``; its run id."""
    run = stack.api_ok("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
    return run["dag_run_id"]


INCOMING = "incoming/"
"""Where the new-photos test uploads photos: the notification's prefix and the runs' image_source."""
QUEUE_NAME = "deeplens-new-photos"


def set_up_notifications(endpoint_url: str, bucket: str) -> str:
    """The README's setup command against the emulator, run twice (idempotent); the queue URL."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]),
        AWS_ACCESS_KEY_ID=DUMMY_KEYS["login"],
        AWS_SECRET_ACCESS_KEY=DUMMY_KEYS["password"],
    )
    command = [
        sys.executable,
        "-m",
        "deeplens_pipeline.new_photos_setup",
        *("--bucket", bucket, "--prefix", INCOMING, "--queue-name", QUEUE_NAME),
        *("--region", REGION, "--endpoint-url", endpoint_url),
    ]
    urls = []
    for _ in range(2):
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise AirflowStackError(f"the setup command failed: {out.stderr[-2000:]}")
        urls.append(re.search(r"^queue: (\S+)$", out.stdout, re.MULTILINE)[1])
    if urls[0] != urls[1]:
        raise AirflowStackError(f"the setup command made two queues: {urls}")
    return urls[0]


def upload_photos(endpoint_url: str, bucket: str, photos: list[Path]) -> None:
    """Upload ``photos`` under :data:`INCOMING` at once (8 at a time), as a camera's sync would."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: s3.upload_file(str(p), bucket, INCOMING + p.name), photos))


def queue_depth(endpoint_url: str, queue_url: str) -> dict[str, int]:
    """The queue's visible and in-flight messages."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return {name: int(attributes[name]) for name in names}


def follow_run(
    stack: LocalAirflow,
    run_id: str,
    timeout: float,
    on_poll: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Follow one run to its end; what the new-photos test checks of it."""
    print(f"Run {run_id} started by itself; task states as they change:")
    watch = RunWatch(stack, run_id)
    dag_run = watch.follow(timeout, on_poll)
    summary = stack.xcom(run_id, "summary") or {}
    record = {
        "run_id": run_id,
        "run_type": dag_run["run_type"],
        "state": dag_run["state"],
        "tasks": {name: ti["state"] for name, ti in watch.current.items()},
        "tries": {name: ti["try_number"] for name, ti in watch.current.items()},
        "asset_events": stack.upstream_asset_events(run_id),
        "images_processed": summary.get("images_processed"),
        "summary": summary,
        "decision": stack.xcom(run_id, "enough_new_photos", key="decision"),
        "split": stack.xcom(run_id, "split_manifest") if summary.get("train_count") is not None else None,
        "run_seconds": round(time.monotonic() - watch.started, 1),
    }
    print(f"  {run_id}: {record['state']} ({record['run_type']}) in {record['run_seconds']:.0f} s")
    return record


def new_photos(args: argparse.Namespace) -> int:
    """The ``new-photos`` command."""
    from deeplens_pipeline.new_photos import QUEUE_URL_ENV
    from deeplens_pipeline.params import RUN_DEFAULTS_ENV
    from emulator.demo import fresh_work_dir, run_conf, start_emulator
    from emulator.sample_dataset import generate_sample_dataset
    from emulator.seed import seed_demo_account

    started = time.monotonic()
    work = fresh_work_dir(args.work_dir)
    dataset = generate_sample_dataset(work / "dataset", n_images=args.photos + args.burst + args.during)
    classes = json.loads((dataset / "answer_key.json").read_text())["classes"]
    photos = sorted((dataset / "images").iterdir())
    emulator, url = start_emulator(work, emulator_environment(work, dataset, args.training))
    result: dict[str, Any] = {"phases": {}}
    # Unpaused from the start: Airflow starts an asset's watchers when it parses an unpaused DAG
    # that uses the asset (unpausing later starts them at the next parse, here 2 minutes on).
    stack = LocalAirflow(work / "airflow", work / "logs", free_port(), paused_at_creation=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: stop everything it started
    stack.env["DEEPLENS_ENVIRONMENT"] = ENVIRONMENT_ID
    stack.env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] = "120"
    try:
        print(f"Emulator serving on {url} (log: {work / 'emulator.log'})")
        os.environ.update(AWS_ACCESS_KEY_ID="emulator", AWS_SECRET_ACCESS_KEY="emulator")  # for the seed
        account = seed_demo_account(url, region=REGION)
        queue_url = set_up_notifications(url, account.bucket)
        print(
            f"Setup command (run twice): queue {queue_url}, notification on s3://{account.bucket}/{INCOMING}"
        )
        source = f"s3://{account.bucket}/{INCOMING}"
        defaults = {
            # The emulated Ground Truth labels the sample photos (they come with no boxes).
            **run_conf(account, source, "train", classes, "ground-truth"),
            "poll_seconds": POLL_SECONDS,
            "min_new_photos": args.min_new_photos,
        }
        stack.env[QUEUE_URL_ENV] = queue_url
        stack.env[RUN_DEFAULTS_ENV] = json.dumps(defaults)  # nobody triggers these runs: the defaults
        print(f"AIRFLOW_HOME={stack.home}; services' logs in {stack.logs}")
        start_airflow(stack, {CONN_ID: aws_connection(url)}, args.timeout)
        first, burst = photos[: args.photos], photos[args.photos : args.photos + args.burst]
        during = photos[args.photos + args.burst :]
        uploaded_during: list[float] = []

        def upload_during(tasks: dict[str, dict[str, Any]]) -> None:
            """Once the burst's run has listed its photos, upload ``--during`` more: the next run's."""
            listed = tasks.get("enough_new_photos", {}).get("state") == "success"
            if during and listed and not uploaded_during:
                upload_photos(url, account.bucket, during)
                uploaded_during.append(time.monotonic())
                print(f"Uploaded {len(during)} photos to {source} during the run", flush=True)

        for phase, batch in (("first", first), ("burst", burst), ("during", during)):
            if not batch:
                continue
            if phase != "during":
                known = {run["dag_run_id"] for run in stack.runs()}
                upload_photos(url, account.bucket, batch)
                print(f"Uploaded {len(batch)} photos to {source} ({phase}); waiting for a run to start")
            elif not uploaded_during:
                raise AirflowStackError("the burst's run ended before its images stage did")
            uploaded = uploaded_during[0] if phase == "during" else time.monotonic()
            run = stack.wait_for(
                "a run started by new photos", lambda k=known: stack.new_run(k), args.timeout
            )
            started_after = round(time.monotonic() - uploaded, 1)
            records = [
                {
                    **follow_run(
                        stack, run["dag_run_id"], args.timeout, upload_during if phase == "burst" else None
                    ),
                    "started_after_upload_seconds": started_after,
                }
            ]
            known = known | {run["dag_run_id"]}
            if phase == "burst" and during:
                result["phases"][phase] = {"photos": len(batch), "runs": records}
                continue  # the run after it is the during phase's
            # Any event queued during the run would start the next run as soon as this one ended.
            time.sleep(5)
            for extra in stack.runs():
                if extra["dag_run_id"] not in known | {r["run_id"] for r in records}:
                    records.append(follow_run(stack, extra["dag_run_id"], args.timeout))
            result["phases"][phase] = {"photos": len(batch), "runs": records}
        result["queued_asset_events"] = stack.queued_asset_events()
        result["queue"] = queue_depth(url, queue_url)
        result["watcher_trigger"] = stack.triggerer_log_mentions("SqsSensorTrigger")
        result["all_runs"] = [
            {"run_id": r["dag_run_id"], "run_type": r["run_type"], "state": r["state"]} for r in stack.runs()
        ]
        result["state"] = "success"
    except AirflowStackError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        result["error"] = str(err)
        result["state"] = "failed"
    finally:
        stack.stop()
        emulator.terminate()
        emulator.wait(timeout=30)
    result["logs"] = str(stack.logs)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"\nWall time: {result['wall_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["state"] == "success" else 1


def wait_for_ctrl_c(stack: LocalAirflow) -> None:
    print(f"\nAirflow keeps running: {stack.url} (every user is an admin). Ctrl-C stops everything.")
    # Ctrl-C, or SIGTERM; SIGINT too when it was inherited as ignored (started with "&" from a script).
    previous = {
        sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while stack.exited() is None:
            time.sleep(1)
        print(stack.exited())
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """The ``run`` command."""
    from deeplens_pipeline.summary import format_summary
    from emulator.demo import fresh_work_dir, run_conf, start_emulator
    from emulator.sample_dataset import generate_sample_dataset
    from emulator.seed import seed_demo_account

    started = time.monotonic()
    work = fresh_work_dir(args.work_dir)
    dataset = generate_sample_dataset(work / "dataset", n_images=args.images)
    classes = json.loads((dataset / "answer_key.json").read_text())["classes"]
    print(f"Generated {args.images} sample photos in {dataset}")
    emulator, url = start_emulator(work, emulator_environment(work, dataset, args.training))
    result: dict[str, Any] = {"state": "not started"}
    stack = LocalAirflow(work / "airflow", work / "logs", free_port())
    # The run's job names hash the environment's id; fixed here so the Label Studio project is known.
    stack.env["DEEPLENS_ENVIRONMENT"] = ENVIRONMENT_ID
    # One parse every 2 minutes instead of 30 s leaves the CPU to the tasks on a small machine.
    stack.env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] = "120"
    labelling = contextlib.ExitStack()
    try:
        print(f"Emulator serving on {url} (log: {work / 'emulator.log'})")
        os.environ.update(AWS_ACCESS_KEY_ID="emulator", AWS_SECRET_ACCESS_KEY="emulator")  # for the seed
        account = seed_demo_account(url, region=REGION)
        print(f"Seeded: bucket {account.bucket}, device {account.thing_name}")
        conf = {
            **run_conf(account, dataset / "images", "train", classes, args.labeling),
            "poll_seconds": POLL_SECONDS,
        }
        connections = {CONN_ID: aws_connection(url)}
        if args.labeling == "label-studio":
            connections[LABEL_STUDIO_CONN_ID] = label_studio_connection(
                labelling, work, url, dataset, account.bucket
            )
        print(f"AIRFLOW_HOME={stack.home}; services' logs in {stack.logs}")
        start_airflow(stack, connections, args.timeout)
        run_id = trigger_run(stack, conf)
        print(f"Triggered {run_id}; task states as they change:")
        watch = RunWatch(stack, run_id)
        dag_run = watch.follow(args.timeout)
        result = {
            "state": dag_run["state"],
            "run_id": run_id,
            "url": f"{stack.url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}",
            "tasks": {name: ti["state"] for name, ti in watch.current.items()},
            "tries": {name: ti["try_number"] for name, ti in watch.current.items()},
            "states_seen": watch.seen,
            "triggerer": triggerer_runs(stack.home / "logs", run_id),
            "triggerer_jobs": triggerer_jobs(stack),
            "summary": stack.xcom(run_id, "summary"),
            "logs": str(stack.logs),
            "run_seconds": round(time.monotonic() - watch.started, 1),
        }
        print(f"\nDAG run {run_id}: {result['state']} in {result['run_seconds']:.0f} s ({result['url']})")
        for task, record in result["triggerer"].items():
            status = re.search(r"'status': '([^']*)'", record.get("event") or "")
            print(
                f"  the triggerer (job {record['triggerer_job']}) ran {task}'s trigger: "
                f"event {status[1] if status else record.get('event')}, log {record['log']}"
            )
        for name, state in sorted(result["tasks"].items()):
            if state not in ("success", "skipped"):
                print(f"  {name:<40} {state}  (logs under {stack.home / 'logs'})")
        if result["summary"]:
            print()
            print(format_summary(result["summary"]))
        if args.keep_running:
            wait_for_ctrl_c(stack)
    except AirflowStackError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        result["error"] = str(err)
    finally:
        stack.stop()
        labelling.close()
        emulator.terminate()
        emulator.wait(timeout=30)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"\nWall time: {result['wall_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["state"] == "success" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start everything, run the DAG once, stop")
    run_parser.add_argument(
        "--work-dir", type=Path, default=ROOT / ".local-airflow", help="emptied first; AIRFLOW_HOME, logs"
    )
    run_parser.add_argument("--images", type=int, default=16, help="sample photos to generate")
    run_parser.add_argument(
        "--training",
        choices=["fast", "train"],
        default="fast",
        help="emulated training: 'fast' builds an untrained model in seconds, 'train' really trains",
    )
    run_parser.add_argument(
        "--labeling",
        choices=["label-studio", "ground-truth", "none"],
        default="ground-truth",
        help="the emulated Ground Truth (default), a real Label Studio server (make ls-env), or none",
    )
    run_parser.add_argument(
        "--keep-running", action="store_true", help="after the run, keep Airflow up until Ctrl-C"
    )
    run_parser.add_argument("--timeout", type=float, default=900, help="seconds for each wait")
    run_parser.add_argument("--json", type=Path, help="also write the outcome as JSON here")
    photos_parser = commands.add_parser("new-photos", help="upload photos; see runs start by themselves")
    photos_parser.add_argument(
        "--work-dir", type=Path, default=ROOT / ".local-airflow", help="emptied first; AIRFLOW_HOME, logs"
    )
    photos_parser.add_argument("--photos", type=int, default=10, help="photos of the first upload")
    photos_parser.add_argument("--burst", type=int, default=10, help="photos uploaded at once afterwards")
    photos_parser.add_argument(
        "--during", type=int, default=0, help="photos uploaded while the burst's run goes on (the next run's)"
    )
    photos_parser.add_argument(
        "--min-new-photos",
        type=int,
        default=1,
        help="the runs' min_new_photos (above --photos: the first upload waits for the burst)",
    )
    photos_parser.add_argument("--training", choices=["fast", "train"], default="fast")
    photos_parser.add_argument("--timeout", type=float, default=900, help="seconds for each wait")
    photos_parser.add_argument("--json", type=Path, help="also write the outcome as JSON here")
    args = parser.parse_args(argv)
    return new_photos(args) if args.command == "new-photos" else run(args)


if __name__ == "__main__":
    sys.exit(main())
