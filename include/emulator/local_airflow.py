"""A throwaway local Airflow 3.3.1 from this checkout's environment: its settings, processes and REST API.

What ``scripts/local_airflow.py`` (the DAG run by Airflow's own services) and
``scripts/trigger_form_check.py`` (the trigger form in a browser) share: an ``AIRFLOW_HOME`` with
SQLite and the LocalExecutor, SimpleAuthManager with every user an admin (the REST API answers
without a token), the DAGs folder ``dags/`` and ``PYTHONPATH=plugins:include`` (the DAG file imports
``deeplens_pipeline`` from ``plugins/``; the model fix and the inference function's source are under
``include/``). Each service runs in its own process group, logging to ``<logs>/<name>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "deeplens_object_detection"
SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
"""The processes a local Airflow 3 runs; the triggerer runs the deferred waits."""
T = TypeVar("T")


class AirflowStackError(AssertionError):
    """The local Airflow did not do what was expected (a service exited, a wait timed out, HTTP error)."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_environment(home: Path, port: int, *, paused_at_creation: bool = True) -> dict[str, str]:
    """The environment of every Airflow command and service: this process's, minus any ``AIRFLOW*``
    and ``AWS_*`` variable (the run must not reach a real account by accident), plus the settings."""
    url = f"http://127.0.0.1:{port}"
    plugins = home / "plugins"  # empty: the project's package comes through PYTHONPATH, as on MWAA
    plugins.mkdir(parents=True, exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    return {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation),
        # Airflow 3 runs the LocalExecutor on SQLite; two task processes suit a 2-core machine.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT / "include")]),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance role to look for on a laptop
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


class LocalAirflow:
    """Airflow's commands and services on one ``AIRFLOW_HOME``, logging into ``logs``."""

    def __init__(self, home: Path, logs: Path, port: int, *, paused_at_creation: bool = True) -> None:
        self.home, self.logs, self.port = home, logs, port
        self.url = f"http://127.0.0.1:{port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.airflow = [str(Path(sys.executable).parent / "airflow")]  # this environment's Airflow
        logs.mkdir(parents=True, exist_ok=True)
        self.env = airflow_environment(home, port, paused_at_creation=paused_at_creation)

    def run(self, *args: str, timeout: float = 300) -> None:
        """Run ``airflow ARGS`` to completion (its output in ``airflow-<args>.log``)."""
        log = self.logs / ("airflow-" + "-".join(a for a in args[:2] if not a.startswith("-")) + ".log")
        with log.open("w") as out:
            result = subprocess.run(
                [*self.airflow, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        if result.returncode != 0:
            raise AirflowStackError(f"airflow {args[0]} {args[1] if len(args) > 1 else ''} failed; see {log}")

    def spawn(self, name: str, *args: str) -> None:
        """Start ``airflow ARGS`` in the background as the service ``name``."""
        out = (self.logs / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            [*self.airflow, *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends its children too
        )

    def spawn_service(self, name: str) -> None:
        """Start one of :data:`SERVICES` (the API server on this stack's port)."""
        extra = ("--port", str(self.port), "--host", "127.0.0.1") if name == "api-server" else ()
        self.spawn(name, name, *extra)

    def stop(self) -> None:
        """SIGTERM every service's process group; SIGKILL what is left after 20 s."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def exited(self) -> str | None:
        """Which service has exited, if one has."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return f"{name} exited with {process.returncode}; see {self.logs / (name + '.log')}"
        return None

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One REST API (``/api/v2``) call: HTTP status and decoded JSON body."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def api_ok(self, method: str, path: str, body: Any = None) -> Any:
        """A REST API call that must answer 2xx; its body."""
        status, answer = self.api(method, path, body)
        if not 200 <= status < 300:
            raise AirflowStackError(f"{method} {path}: HTTP {status} {answer}")
        return answer

    def wait_for(self, what: str, probe: Callable[[], T], timeout: float, every: float = 1.0) -> T:
        """``probe()``'s first truthy answer; fails when a service exits or after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            failure = self.exited()
            if failure is not None:
                raise AirflowStackError(f"waiting for {what}: {failure}")
            with contextlib.suppress(OSError):
                result = probe()
                if result:
                    return result
            if time.monotonic() > deadline:
                raise AirflowStackError(f"{what}: not within {timeout:.0f} s")
            time.sleep(every)

    def wait_for_dag(self, timeout: float, dag_id: str = DAG_ID) -> dict[str, Any]:
        """Wait until the API server answers and ``dag_id`` is parsed; its details. An import error
        fails at once, with its stack trace."""

        def parsed() -> dict[str, Any] | None:
            status, details = self.api("GET", f"/dags/{dag_id}/details")
            if status == 200:
                return details
            _, errors = self.api("GET", "/importErrors")
            for error in errors.get("import_errors", []) if isinstance(errors, dict) else []:
                raise AirflowStackError(f"the DAG does not import: {error.get('stack_trace')}")
            return None

        self.wait_for("the API server", lambda: self.api("GET", "/monitor/health")[0] == 200, timeout)
        return self.wait_for(f"the DAG {dag_id} to be parsed", parsed, timeout)

    def runs(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """The DAG's runs, newest first."""
        return self.api_ok("GET", f"/dags/{dag_id}/dagRuns?order_by=-run_after")["dag_runs"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """Every task instance of one run (mapped ones included)."""
        quoted = urllib.parse.quote(run_id, safe="")
        found: list[dict[str, Any]] = []
        while True:
            page = self.api_ok(
                "GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=100&offset={len(found)}"
            )
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def xcom(self, run_id: str, task_id: str, key: str = "return_value", dag_id: str = DAG_ID) -> Any:
        """A task's XCom value as stored (JSON decoded), or ``None`` when it has none."""
        quoted = urllib.parse.quote(run_id, safe="")
        status, entry = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        if status == 404:
            return None
        if status != 200:
            raise AirflowStackError(f"XCom {task_id}.{key}: HTTP {status} {entry}")
        value = entry["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def new_run(self, known: set[str], dag_id: str = DAG_ID) -> dict[str, Any] | None:
        """The newest run of ``dag_id`` whose id is not in ``known``, once there is one."""
        return next((run for run in self.runs(dag_id) if run["dag_run_id"] not in known), None)

    def upstream_asset_events(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """The asset events that started one run (asset, source, and how many messages each carried)."""
        quoted = urllib.parse.quote(run_id, safe="")
        events = self.api_ok("GET", f"/dags/{dag_id}/dagRuns/{quoted}/upstreamAssetEvents")["asset_events"]
        return [
            {
                "asset": event.get("name") or event.get("uri"),
                "timestamp": event.get("timestamp"),
                "messages": len((event.get("extra") or {}).get("payload", {}).get("message_batch", [])),
                "extra_keys": sorted(event.get("extra") or {}),
            }
            for event in events
        ]

    def queued_asset_events(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """Asset events waiting to start the next run of ``dag_id`` (none: no run is pending)."""
        status, answer = self.api("GET", f"/dags/{dag_id}/assets/queuedEvents")
        if status == 404:
            return []
        if status != 200:
            raise AirflowStackError(f"queued asset events: HTTP {status} {answer}")
        return answer.get("queued_events", [])

    def triggerer_log_mentions(self, text: str) -> bool:
        """Whether the triggerer's own log (where asset watchers' triggers log) mentions ``text``."""
        log = self.logs / "triggerer.log"
        return log.exists() and text in log.read_text(errors="replace")
