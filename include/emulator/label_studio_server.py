"""A real Label Studio server (label-studio 1.23.2, from ``.venv-ls``) for the demo and the tests.

Label Studio runs in an environment of its own (``make ls-env`` builds ``.venv-ls`` from
``requirements/label-studio.txt``), never in the Airflow one: this module only starts it as a
subprocess (``python -m label_studio.server start``, Django's ``runserver``) and talks HTTP to it.

:func:`start_label_studio` (or the context manager :func:`label_studio_server`) starts one on a free
port of 127.0.0.1 with a throwaway data folder (sqlite), a generated admin user and a generated API
token, and returns once ``GET /api/projects`` answers 200 with that token.

**The token** is a *legacy* API token (Django REST framework's ``Token``, 40 hex characters), set
with ``LABEL_STUDIO_USER_TOKEN`` and accepted because the organisation is created with legacy tokens
enabled (``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``; 1.23.2 turns them off for new organisations,
leaving only personal access tokens). It works as ``Authorization: Token <token>`` for plain HTTP, and
label-studio-sdk 2.x's ``LabelStudio(base_url=url, api_key=token)`` sends it so too (the SDK sends a
key as a legacy token when it is not a JWT). :meth:`LabelStudioServer.create_personal_access_token`
makes a personal access token (a JWT refresh token) too: the SDK trades it at ``/api/token/refresh/``
for short-lived access tokens sent as ``Authorization: Bearer``; plain ``Token`` requests refuse it.

**S3 with a local endpoint.** Label Studio's SSRF protection (on by default) refuses an S3 storage
whose ``s3_endpoint`` resolves to a reserved address, loopback included, when the storage is saved
and again on every connection. The server keeps the protection but bans every default subnet except
loopback (``USE_DEFAULT_BANNED_SUBNETS=false`` and ``USER_ADDITIONAL_BANNED_SUBNETS`` = Label Studio's
own list less ``127.0.0.0/8`` and ``::1/128``), so a storage at ``http://127.0.0.1:<port>`` (the
emulator) validates and presigns, while private networks stay refused.

The first start of a Label Studio version migrates a new sqlite database (261 migrations: about
100 s on 2 idle cores, 3 to 4 minutes on a loaded machine); the migrated, still empty database is
then kept as a template beside the environment (``.venv-ls/label-studio-template/``) and copied into
each later data folder, so later starts take 7 to 10 s (up to about 25 s on a loaded machine).
The server runs in a session of its own: call :meth:`LabelStudioServer.stop` (or use
:func:`label_studio_server`); an interpreter that exits normally stops it too (``atexit``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

log = logging.getLogger("emulator.label_studio")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".venv-ls"
DB_NAME = "label_studio.sqlite3"

# Label Studio 1.23.2's default banned subnets (core/utils/io.py, validate_ip) less loopback, so the
# emulator's S3 endpoint on 127.0.0.1 is allowed and every other reserved network stays banned.
BANNED_SUBNETS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "233.252.0.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::ffff:0:0/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:0000::/32",
    "2001:20::/28",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

# Variables of the caller's environment that would change which Python code or settings the server
# loads (the Makefile exports PYTHONPATH for the Airflow side).
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")


class LabelStudioNotInstalled(RuntimeError):
    """The Label Studio environment is missing."""


class LabelStudioStartError(RuntimeError):
    """The server did not start or did not answer in time."""


def label_studio_command() -> list[str]:
    """The command that runs Label Studio's CLI: ``LABEL_STUDIO_BIN`` (the ``label-studio`` script),
    else ``LABEL_STUDIO_PYTHON -m label_studio.server``, else ``.venv-ls``'s Python."""
    bin_path = os.environ.get("LABEL_STUDIO_BIN")
    if bin_path:
        if not Path(bin_path).is_file():
            raise LabelStudioNotInstalled(f"LABEL_STUDIO_BIN={bin_path} does not exist")
        return [bin_path]
    python = os.environ.get("LABEL_STUDIO_PYTHON")
    if python:
        if not Path(python).is_file():
            raise LabelStudioNotInstalled(f"LABEL_STUDIO_PYTHON={python} does not exist")
        return [python, "-m", "label_studio.server"]
    python = DEFAULT_VENV / "bin" / "python"
    if not (python.is_file() and (DEFAULT_VENV / ".installed").exists()):
        raise LabelStudioNotInstalled(
            f"Label Studio's environment {DEFAULT_VENV} is missing: run `make ls-env` "
            "(or set LABEL_STUDIO_PYTHON / LABEL_STUDIO_BIN to an installed label-studio)"
        )
    return [str(python), "-m", "label_studio.server"]


def label_studio_available() -> bool:
    """Whether :func:`label_studio_command` finds an installed Label Studio."""
    try:
        label_studio_command()
    except LabelStudioNotInstalled:
        return False
    return True


def _env_prefix(command: list[str]) -> Path:
    """The environment (venv) holding Label Studio: ``<prefix>/bin/<python or label-studio>``."""
    return Path(command[0]).absolute().parent.parent


def _template_path(command: list[str]) -> Path:
    """Where the migrated empty database of this Label Studio version is kept."""
    prefix = _env_prefix(command)
    versions = sorted(prefix.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    version = versions[-1].name.removesuffix(".dist-info") if versions else "label_studio"
    return prefix / "label-studio-template" / f"{version}.sqlite3"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not ended within ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@dataclass
class LabelStudioServer:
    """A running Label Studio: its URL, admin user and legacy API token, data folder, log, process."""

    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen
    startup_seconds: float = 0.0
    migrated: bool = False  # whether this start ran the database migrations

    @property
    def headers(self) -> dict[str, str]:
        """The header plain HTTP requests authenticate with."""
        return {"Authorization": f"Token {self.token}"}

    def client(self):  # -> label_studio_sdk.LabelStudio (imported lazily: optional dependency)
        """A label-studio-sdk client authenticated with the legacy token."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self.token)

    def create_personal_access_token(self) -> str:
        """A new personal access token (JWT refresh token) of the admin user (one per user at a time)."""
        response = requests.post(f"{self.url}/api/token/", headers=self.headers, timeout=30)
        response.raise_for_status()
        return response.json()["token"]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """Stop the server (SIGTERM to its process group; SIGKILL after ``timeout`` seconds)."""
        atexit.unregister(self.stop)
        _stop_process(self.process, timeout)

    def __enter__(self) -> LabelStudioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_env(
    data_dir: Path, url: str, username: str, password: str, token: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The server's environment: ``base`` (default: this process's) with Label Studio's settings."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _DROPPED_ENV}
    if not env.get("CI", "x").strip():
        env.pop("CI")  # Label Studio reads CI as a boolean: an empty value stops it at start-up
    home = data_dir.parent
    env.update(
        {
            # Where everything lives: a throwaway folder, a sqlite database in it, and nothing in ~
            # (Label Studio keeps a user id in ~/.config/label-studio otherwise).
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_DJANGO_DB": "sqlite",
            "LABEL_STUDIO_DATABASE_NAME": str(data_dir / DB_NAME),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "share"),
            "XDG_CACHE_HOME": str(home / "cache"),
            # The public URL: the absolute base of the /tasks/<id>/resolve/ links in task data.
            "LABEL_STUDIO_HOST": url,
            # The admin user, created at start, and its legacy token (accepted only when the
            # organisation has legacy tokens enabled, which this makes the default).
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # SSRF protection stays on, loopback allowed (the emulator's S3 endpoint).
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "true",
            "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS": "false",
            "LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS": ",".join(BANNED_SUBNETS),
            # Storage errors from an endpoint outside these domains are masked ("Debugging info is not
            # available ..."); '' is the registered domain of an IP address such as 127.0.0.1.
            "LABEL_STUDIO_S3_TRUSTED_STORAGE_DOMAINS": "amazonaws.com,",
            # No calls home: no Sentry, no version check on PyPI, no usage analytics.
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_DEBUG": "false",
            "LABEL_STUDIO_LOG_LEVEL": "INFO",
        }
    )
    return env


def _migrate_database(command: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
    """Create and migrate the database ``env`` names (``label-studio version`` applies the migrations,
    prints the version and exits)."""
    log.info("Label Studio: first start of this version, migrating a new database (1-3 minutes)")
    start = time.monotonic()
    with log_path.open("a") as out:
        try:
            done = subprocess.run(
                [*command, "version", "--no-browser"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LabelStudioStartError(
                f"Label Studio's database migrations did not finish in {timeout:.0f} s; "
                f"log {log_path}:\n{_tail(log_path)}"
            ) from None
    if done.returncode != 0:
        raise LabelStudioStartError(
            f"Label Studio's database migrations failed (exit {done.returncode}); "
            f"log {log_path}:\n{_tail(log_path)}"
        )
    log.info("Label Studio: database migrated in %.0f s", time.monotonic() - start)


def _keep_template(database: Path, template: Path) -> None:
    """Keep a copy of a freshly migrated database (written aside, then renamed into place)."""
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=template.parent, suffix=".tmp")
        os.close(fd)
        shutil.copyfile(database, tmp)
        Path(tmp).replace(template)
    except OSError as err:  # a read-only environment: every start migrates
        log.warning("Label Studio: could not keep the migrated database at %s: %s", template, err)


def start_label_studio(
    work_dir: Path,
    *,
    timeout: float = 180,
    migrate_timeout: float = 900,
    use_template: bool = True,
    extra_env: dict[str, str] | None = None,
) -> LabelStudioServer:
    """Start Label Studio on a free 127.0.0.1 port with a new data folder under ``work_dir``.

    Returns once ``GET /api/projects`` answers 200 with the generated token. ``timeout`` bounds that
    wait; the one-off migration of a new database (first start on a machine) has ``migrate_timeout``.
    Raises :class:`LabelStudioNotInstalled` (naming ``make ls-env``) when Label Studio is missing and
    :class:`LabelStudioStartError` (with the log's path and last lines) when it does not come up.
    ``extra_env`` overrides the server's environment (:func:`server_env`).
    """
    command = label_studio_command()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="label-studio-", dir=work_dir))
    data_dir = home / "data"
    data_dir.mkdir()
    log_path = home / "label-studio.log"
    username = "admin@deeplens.example.com"
    password = secrets.token_urlsafe(16)
    token = secrets.token_hex(20)  # the shape of Django REST framework's tokens; not a JWT

    started = time.monotonic()
    template = _template_path(command)
    migrated = False
    if use_template and template.is_file():
        shutil.copyfile(template, data_dir / DB_NAME)
    else:
        # Migrations write the sqlite file hundreds of times: on tmpfs when there is one (faster).
        scratch_root = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        with tempfile.TemporaryDirectory(prefix="label-studio-migrate-", dir=scratch_root) as scratch:
            scratch_data = Path(scratch) / "data"
            scratch_data.mkdir()
            env = server_env(scratch_data, "http://127.0.0.1", username, password, token)
            _migrate_database(command, {**env, **(extra_env or {})}, log_path, migrate_timeout)
            shutil.copyfile(scratch_data / DB_NAME, data_dir / DB_NAME)
            _keep_template(scratch_data / DB_NAME, template)
        migrated = True

    last_error = ""
    for _attempt in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**server_env(data_dir, url, username, password, token), **(extra_env or {})}
        with log_path.open("a") as out:
            out.write(f"\n=== label-studio start on {url}\n")
            out.flush()
            process = subprocess.Popen(
                [*command, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=home,
                start_new_session=True,  # its own process group: stop() ends runserver's children too
            )
        server = LabelStudioServer(url, token, username, password, data_dir, log_path, process, 0.0, migrated)
        atexit.register(server.stop)  # its own session: nothing else ends it if the caller forgets
        try:
            _wait_ready(server, port, timeout)
        except _PortTaken as err:
            last_error = str(err)
            server.stop()
            continue
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - started
        log.info(
            "Label Studio: serving at %s after %.1f s%s (log %s)",
            url,
            server.startup_seconds,
            " including migrations" if migrated else "",
            log_path,
        )
        return server
    raise LabelStudioStartError(f"Label Studio could not bind a free port ({last_error}); log {log_path}")


class _PortTaken(Exception):
    pass


def _wait_ready(server: LabelStudioServer, port: int, timeout: float) -> None:
    """Poll ``GET /api/projects`` with the token until it answers 200."""
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    next_report = start + 10
    last = "no answer yet"
    while True:
        code = server.process.poll()
        if code is not None:
            text = _tail(server.log_path)
            if f"Port {port} is in use" in text:
                raise _PortTaken(f"port {port} was taken")
            raise LabelStudioStartError(
                f"Label Studio exited with code {code} before answering; log {server.log_path}:\n{text}"
            )
        try:
            response = requests.get(f"{server.url}/api/projects", headers=server.headers, timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except requests.RequestException as err:
            last = f"{type(err).__name__}"
        if f"Port {port} is in use" in _tail(server.log_path, 10):
            raise _PortTaken(f"port {port} was taken")
        now = time.monotonic()
        if now > deadline:
            raise LabelStudioStartError(
                f"Label Studio did not answer GET /api/projects with 200 within {timeout:.0f} s "
                f"(last: {last}); log {server.log_path}:\n{_tail(server.log_path)}"
            )
        if now >= next_report:
            log.info("Label Studio: waiting for %s (%.0f s, %s)", server.url, now - start, last)
            next_report = now + 10
        time.sleep(0.5)


@contextlib.contextmanager
def label_studio_server(work_dir: Path, *, timeout: float = 180, **kwargs) -> Iterator[LabelStudioServer]:
    """:func:`start_label_studio` as a context manager: the server is stopped on exit."""
    server = start_label_studio(work_dir, timeout=timeout, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m emulator.label_studio_server [--work-dir DIR]``: serve until interrupted; prints
    ``LABEL_STUDIO_URL=``, ``LABEL_STUDIO_TOKEN=``, the user and password."""
    import argparse
    import threading

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="label-studio-"))
    try:
        server = start_label_studio(work_dir, timeout=args.timeout)
    except (LabelStudioNotInstalled, LabelStudioStartError) as err:
        print(f"error: {err}")
        return 1
    print(f"LABEL_STUDIO_URL={server.url}", flush=True)
    print(f"LABEL_STUDIO_TOKEN={server.token}", flush=True)
    print(f"LABEL_STUDIO_USERNAME={server.username}", flush=True)
    print(f"LABEL_STUDIO_PASSWORD={server.password}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            if not server.running():
                print(f"Label Studio exited; log {server.log_path}")
                return 1
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
