"""A screenshot of what an annotator sees in Label Studio: the run's image and classes, in a real browser.

Starts the AWS emulator (S3) and a real Label Studio server (``.venv-ls``, ``make ls-env``) in
throwaway folders, generates one sample photo, uploads it under the DAG's default input prefix, and
lets the DAG's own Label Studio backend (:class:`LabelStudioBackend`) create the project (title,
``label_config(classes)``, instructions), connect its S3 storage (presigned URLs, the emulator as
``s3endpoint``) and import the task (``task_data``), exactly as a run does. Then Debian's Chromium
(headless, driven by Playwright; no browser download) signs in with the login form, opens the
task in the labelling page, waits until the image has really loaded (through the presigned URL,
from the emulator) and the class labels show, and saves a screenshot.

    .venv/bin/python scripts/label_studio_screenshot.py --out build/label-studio-task.png
    .venv/bin/python scripts/label_studio_screenshot.py --out task.png --classes cat dog --keep-running

Prints the screenshot's path. ``--keep-running`` leaves the servers up (with the URL and the sign-in)
until Ctrl-C, to look around by hand. Exit status: 0 on success, 1 when the page did not show the
image or the labels, 77 when Chromium, Playwright or Label Studio's environment is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "plugins", ROOT / "include"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

EXIT_MISSING = 77
ENVIRONMENT = "screenshot"
DAG_ID = "deeplens_object_detection"
RUN_ID = "manual__label-studio-screenshot"
REGION = "us-east-1"
ACCESS_KEY = "label-studio-screenshot"  # the emulator takes any key
VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

log = logging.getLogger("label_studio_screenshot")


class Missing(RuntimeError):
    """A tool the screenshot needs is not installed (Chromium, Playwright, Label Studio)."""


class PageNotReady(RuntimeError):
    """The labelling page did not show the image or the labels in time."""


@dataclass
class Shot:
    """What the screenshot shows, as the page reported it."""

    path: Path
    page_url: str
    image_src: str
    natural_size: tuple[int, int]
    shown_size: tuple[int, int]
    labels: list[str]
    visible_labels: list[str]
    network: list[str] = field(default_factory=list)
    seconds: float = 0.0  # in the browser: sign-in, page, image
    total_seconds: float = 0.0  # with the servers' start and the project's creation
    cors_allows_origin: bool = False  # whether the bucket's CORS rules let Label Studio's origin GET


def find_chromium() -> str:
    """Debian's Chromium (or ``$CHROMIUM``); :class:`Missing` when there is none."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise Missing("no Chromium at /usr/bin/chromium: apt-get install chromium (or set CHROMIUM)")


def check_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise Missing(
            "Python's playwright is missing here: pip install -r requirements/airflow-dev.txt"
        ) from None


class _Operator:
    """What the labelling backend asks of its operator, outside a DAG run: a log, the connections' ids,
    and an S3 hook (the DAG's, on a connection to the emulator)."""

    label_studio_conn_id = "label_studio_default"
    aws_conn_id = "label_studio_screenshot_aws"
    prelabel = False  # the screenshot shows an empty task: no model draws boxes on it

    def __init__(self) -> None:
        self.log = log

    def s3(self, config: dict[str, Any]) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=config["region"])


@contextlib.contextmanager
def _aws_connection(conn_id: str, endpoint: str) -> Iterator[None]:
    """The Airflow connection ``conn_id`` to the emulator, in this process's environment meanwhile."""
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    old = os.environ.get(name)
    os.environ[name] = json.dumps(
        {
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": ACCESS_KEY,
            "extra": {"endpoint_url": endpoint, "region_name": REGION},
        }
    )
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@dataclass
class Task:
    """The task the DAG's backend made: its project, id, image and the bucket's CORS rules."""

    project_id: int
    project_title: str
    task_id: int
    image_uri: str
    cors_rules: list[dict[str, Any]]


def cors_allows(rules: list[dict[str, Any]], origin: str) -> bool:
    """Whether S3 would answer a GET from ``origin`` under these CORS rules (the emulator's moto
    answers every origin whatever the bucket's rules, so the page alone cannot tell)."""
    return any(
        "GET" in rule.get("AllowedMethods", [])
        and any(fnmatch.fnmatchcase(origin, allowed) for allowed in rule.get("AllowedOrigins", []))
        for rule in rules
    )


def create_task(
    ls_url: str,
    ls_token: str,
    s3_endpoint: str,
    image: Path,
    classes: Sequence[str],
    bucket: str | None = None,
) -> Task:
    """Upload ``image`` under the input prefix of ``bucket`` (default: the DAG's) on the emulator,
    then let the DAG's backend make the project, its S3 storage and the task."""
    import boto3

    from deeplens_pipeline.hooks.label_studio import LabelStudioServer as Connection
    from deeplens_pipeline.naming import RunScope
    from deeplens_pipeline.operators.labeling_backends import LabelStudioBackend
    from deeplens_pipeline.params import PARAM_SPECS

    config = {name: spec.default for name, spec in PARAM_SPECS.items()}
    config.update(classes=list(classes), labeling_backend="label-studio", region=REGION)
    if bucket:
        config["bucket"] = bucket
    bucket, prefix = config["bucket"], config["input_prefix"]
    key = f"{prefix}{image.name}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=ACCESS_KEY,
    )
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    content_type = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
    s3.upload_file(str(image), bucket, key, ExtraArgs={"ContentType": content_type})
    uri = f"s3://{bucket}/{key}"

    backend = LabelStudioBackend(_Operator(), config, RunScope(ENVIRONMENT, DAG_ID, RUN_ID))
    # The connection the DAG reads (URL, token, and the S3 settings Label Studio presigns with).
    backend._server = Connection(
        conn_id=_Operator.label_studio_conn_id,
        url=ls_url,
        token=ls_token,
        storage={
            "s3_endpoint": s3_endpoint,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": ACCESS_KEY,
            "region_name": REGION,
        },
    )
    with _aws_connection(_Operator.aws_conn_id, s3_endpoint):
        backend.start(lambda: [uri])  # CORS, project, storage, task; returns the trigger a run waits on
    tasks = backend.tasks(annotations=False)
    try:
        rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    except s3.exceptions.ClientError:
        rules = []
    return Task(backend.project_id, backend.title, tasks[uri]["id"], uri, rules)


_PAGE_STATE = """
(labels) => {
  const imgs = [...document.querySelectorAll('img')].map((img) => {
    const box = img.getBoundingClientRect();
    return {src: img.currentSrc || img.src, complete: img.complete, w: img.naturalWidth,
            h: img.naturalHeight, shown_w: Math.round(box.width), shown_h: Math.round(box.height)};
  });
  const visible = labels.filter((name) => [...document.querySelectorAll('*')].some((el) =>
    el.children.length === 0 && el.textContent.trim() === name && el.getBoundingClientRect().width > 0));
  const text = document.body ? document.body.innerText : '';
  return {imgs, visible, text: text.slice(0, 2000)};
}
"""


def screenshot(
    ls_url: str,
    username: str,
    password: str,
    project_id: int,
    task_id: int,
    image_uri: str,
    classes: Sequence[str],
    out: Path,
    *,
    s3_endpoint: str,
    timeout: float = 60,
) -> Shot:
    """Sign in, open the task in the labelling page, wait for the image and labels, save ``out``."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    started = time.monotonic()
    object_url = f"{s3_endpoint}/{image_uri.removeprefix('s3://')}"
    network: list[str] = []  # the image's way: Label Studio's /resolve/ redirect, then the emulator

    def on_response(response: Any) -> None:
        url = response.url
        if url.startswith(object_url + "?") or f"/tasks/{task_id}/resolve/" in url:
            request = response.request
            cors = response.headers.get("access-control-allow-origin")
            who = "service worker" if request.service_worker else "page"
            network.append(
                f"{request.method} {url.split('?')[0]} -> {response.status}"
                f" ({who}, {request.resource_type}{', CORS ' + cors if cors else ''})"
            )

    with tempfile.TemporaryDirectory(prefix="ls-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            page.set_default_timeout(timeout * 1000)
            # On the context: Label Studio's service worker (sw.js) fetches /resolve/ URLs itself.
            context.on("response", on_response)
            log.info("browser: Chromium up after %.1f s", time.monotonic() - started)
            # Sign in as the admin user with the login form (Django's session and CSRF cookies).
            page.goto(f"{ls_url}/user/login/")
            page.fill("input[name=email]", username)
            page.fill("input[name=password]", password)
            with page.expect_navigation():
                page.press("input[name=password]", "Enter")
            if "/user/login" in page.url:
                raise PageNotReady(f"the login form refused {username}: still on {page.url}")
            log.info("browser: signed in after %.1f s", time.monotonic() - started)
            # The task opened in the project's Data Manager: the labelling view an annotator works in.
            page.goto(f"{ls_url}/projects/{project_id}/data?task={task_id}")
            log.info("browser: task page loaded after %.1f s", time.monotonic() - started)
            state = _wait_ready(page, task_id, object_url, network, list(classes), timeout)
            log.info("browser: image and labels shown after %.1f s", time.monotonic() - started)
            page.wait_for_timeout(500)  # the canvas's last paint after the image's load
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            page_url = page.url
        except Exception:
            with contextlib.suppress(Exception):
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out.with_suffix(".failed.png")))
            raise
        finally:
            context.close()
    image = _task_image(state, task_id)
    return Shot(
        path=out,
        page_url=page_url,
        image_src=image["src"],
        natural_size=(image["w"], image["h"]),
        shown_size=(image["shown_w"], image["shown_h"]),
        labels=list(classes),
        visible_labels=state["visible"],
        network=network,
        seconds=time.monotonic() - started,
    )


def _task_image(state: dict[str, Any], task_id: int) -> dict[str, Any] | None:
    """The labelling canvas's image: the largest shown <img> of the task's image that has pixels
    (Label Studio shows it from the /resolve/ URL, or from a blob: of what it fetched there)."""
    candidates = [
        i
        for i in state["imgs"]
        if i["complete"]
        and i["w"] > 0
        and (i["src"].startswith("blob:") or f"/tasks/{task_id}/resolve/" in i["src"])
    ]
    return max(candidates, key=lambda i: i["shown_w"] * i["shown_h"], default=None)


def _wait_ready(
    page: Any, task_id: int, object_url: str, network: list[str], classes: list[str], timeout: float
) -> dict[str, Any]:
    """Poll the page until the task's image has pixels on the canvas, the browser got it from the
    emulator (a presigned GET answered 200), and every class label shows."""
    deadline = time.monotonic() + timeout
    from_emulator = f"GET {object_url} -> 200"
    while True:
        state = page.evaluate(_PAGE_STATE, classes)
        image = _task_image(state, task_id)
        fetched = any(line.startswith(from_emulator) for line in network)
        if image is not None and image["shown_w"] > 100 and fetched and set(state["visible"]) == set(classes):
            return state
        if time.monotonic() > deadline:
            raise PageNotReady(
                f"after {timeout:.0f} s the labelling page shows images {state['imgs']}, labels "
                f"{state['visible']} of {classes}; the image's requests: {network}; "
                f"page text: {state['text'][:500]!r}"
            )
        page.wait_for_timeout(250)


def run(
    out: Path,
    classes: Sequence[str],
    *,
    keep_running: bool = False,
    work_dir: Path | None = None,
    emulator_url: str | None = None,
    label_studio: Any = None,
    bucket: str | None = None,
) -> Shot:
    """Start what is not given (emulator, Label Studio), make the task, take the screenshot.

    ``emulator_url`` and ``label_studio`` (a started :class:`emulator.label_studio_server.LabelStudioServer`)
    reuse running servers (the tests' session fixtures); what this starts, it stops.
    """
    find_chromium()
    check_playwright()
    from emulator.label_studio_server import LabelStudioNotInstalled, start_label_studio
    from emulator.sample_dataset import generate_sample_dataset

    started = time.monotonic()
    own_dir = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="ls-screenshot-")) if own_dir else Path(work_dir)
    try:
        with contextlib.ExitStack() as stack:
            if emulator_url is None:
                from emulator.server import EmulatorServer
                from emulator.settings import EmulatorSettings

                emulator = EmulatorServer(EmulatorSettings(work_dir=work / "emulator"))
                emulator_url = emulator.start()
                stack.callback(emulator.stop)
            if label_studio is None:
                try:
                    label_studio = stack.enter_context(start_label_studio(work / "label-studio"))
                except LabelStudioNotInstalled as err:
                    raise Missing(str(err)) from None
            dataset = generate_sample_dataset(work / "dataset", n_images=1, classes=classes)
            image = next((dataset / "images").iterdir())
            task = create_task(label_studio.url, label_studio.token, emulator_url, image, classes, bucket)
            log.info(
                "project %r (id %s), task %s for %s",
                task.project_title,
                task.project_id,
                task.task_id,
                task.image_uri,
            )
            shot = screenshot(
                label_studio.url,
                label_studio.username,
                label_studio.password,
                task.project_id,
                task.task_id,
                task.image_uri,
                classes,
                out,
                s3_endpoint=emulator_url,
            )
            shot.total_seconds = time.monotonic() - started
            shot.cors_allows_origin = cors_allows(task.cors_rules, label_studio.url)
            if not shot.cors_allows_origin:
                raise PageNotReady(
                    f"the bucket's CORS rules {task.cors_rules} would not let {label_studio.url} GET the "
                    "image on S3 (the emulator does not enforce them: the page loaded it anyway)"
                )
            if keep_running:
                report(shot)
                print(
                    f"Label Studio at {shot.page_url} (user {label_studio.username}, password "
                    f"{label_studio.password}); S3 emulator at {emulator_url}. Ctrl-C stops them.",
                    flush=True,
                )
                _wait_for_signal()
            return shot
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def report(shot: Shot) -> None:
    """Log what the page showed and how long it took; print the screenshot's path."""
    log.info(
        "%s: image %dx%d (shown %dx%d) from %s; labels shown: %s; requests: %s",
        shot.page_url,
        *shot.natural_size,
        *shot.shown_size,
        shot.image_src.split("?")[0],
        ", ".join(shot.visible_labels),
        "; ".join(shot.network),
    )
    log.info("%.1f s in the browser, %.1f s in all", shot.seconds, shot.total_seconds)
    print(shot.path, flush=True)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    from deeplens_pipeline.params import PARAM_SPECS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the PNG")
    parser.add_argument(
        "--classes",
        nargs="+",
        default=list(PARAM_SPECS["classes"].default),
        help="the run's classes (default: the DAG's, %(default)s)",
    )
    parser.add_argument("--keep-running", action="store_true", help="leave the servers up until Ctrl-C")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        with contextlib.ExitStack() as stack:
            if "AIRFLOW_HOME" not in os.environ:  # the DAG's code imports Airflow: a throwaway home
                os.environ["AIRFLOW_HOME"] = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="ls-screenshot-airflow-")
                )
            shot = run(args.out, args.classes, keep_running=args.keep_running)
    except Missing as err:
        print(f"skipped: {err}", file=sys.stderr)
        return EXIT_MISSING
    except PageNotReady as err:
        print(f"failed: {err}", file=sys.stderr)
        return 1
    if not args.keep_running:  # else reported before the wait
        report(shot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
