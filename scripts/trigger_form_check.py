"""Trigger the DAG from its form in a real browser: defaults plus a bucket start a run; a bad bucket
shows the project's rule in words.

Starts Airflow 3.3.1 from this checkout's ``.venv`` (API server and scheduler; the DAG is parsed
once into the database with ``airflow dags reserialize``, as a DAG processor would) with a
throwaway ``AIRFLOW_HOME`` (SQLite, SimpleAuthManager with every user an admin, the DAGs folder
``dags/``, ``PYTHONPATH=plugins:include``), drives Debian's Chromium headless through Playwright
(no browser download: ``executable_path``), and stops everything at the end:

1. the trigger form opens with no section in error, the Trigger button enabled, and no field but
   the required ones marked required;
2. a bad bucket ("my-bucket") is refused with the rule in words (not a regex), and no run starts;
3. the defaults plus a bucket start a run: the DAG run appears through the REST API (queued or
   running; it need not finish: its first AWS call may fail, there is no AWS here);
4. each pattern the Params use compiles as an ECMA-262 regular expression (the "u" flag) in the
   browser and accepts exactly what Python's ``re`` accepts on sample values.

Screenshots and the services' logs go to ``--artefacts DIR``. Exit status: 0 when every check
passes, 1 when one fails, 77 when there is no Chromium (the caller skips).

    .venv/bin/python scripts/trigger_form_check.py --artefacts build/trigger-form
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from emulator.local_airflow import AirflowStackError, LocalAirflow, free_port  # noqa: E402

DAG_ID = "deeplens_object_detection"
EXIT_NO_BROWSER = 77
BUCKET = "deeplens-form-check"
BAD_BUCKET = "my-bucket"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """Debian's Chromium (or ``$CHROMIUM``), if installed."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class CheckFailed(AirflowStackError):
    """One of the form's checks failed."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ------------------------------------------------------------------ Airflow, started and stopped


class Airflow(LocalAirflow):
    """API server and scheduler of a throwaway Airflow (new DAGs unpaused), logging into ``logs``."""

    def __init__(self, home: Path, logs: Path, port: int) -> None:
        super().__init__(home, logs, port, paused_at_creation=False)

    def start(self) -> None:
        """The database, then the API server while the DAG is parsed once, then the scheduler.

        One parse (``dags reserialize``) instead of a DAG processor that would parse the file again
        every 30 s: on a small machine the three processes and the task's own parse share the CPUs.
        """
        self.run("db", "migrate")
        self.spawn_service("api-server")
        self.run("dags", "reserialize")
        self.spawn_service("scheduler")


@contextlib.contextmanager
def airflow_running(logs: Path, timeout: float) -> Iterator[Airflow]:
    with tempfile.TemporaryDirectory(prefix="deeplens-form-airflow-") as home:
        stack = Airflow(Path(home), logs, free_port())
        try:
            stack.start()
            stack.wait_for_dag(timeout)
            yield stack
        finally:
            stack.stop()


# ------------------------------------------------------------------ the browser's checks


def pattern_samples() -> dict[str, list[str]]:
    """Every pattern the Params use, with values to try it on (good, bad and tricky)."""
    from deeplens_pipeline.params import PARAM_SPECS

    tricky = ["", "\n", "a\n", "é", "٣", " x", "x ", "-x", "../", "a..b", "10.0", "Ω", "\u2028", "x\ty"]
    samples: dict[str, list[str]] = {}
    for spec in PARAM_SPECS.values():
        schema = spec.schema.get("items", spec.schema)
        if "pattern" not in schema:
            continue
        default = spec.default[0] if isinstance(spec.default, list) else spec.default
        values = [str(default), f"{default}\n", f"{default}x", f"x{default}", *tricky]
        values += [f"{default}{t}" for t in tricky]
        samples[schema["pattern"]] = sorted(set(values) | set(samples.get(schema["pattern"], [])))
    return samples


def check_patterns_in_browser(page: Any) -> int:
    """Each pattern compiles with the "u" flag and agrees with Python's re.search on its samples."""
    import re

    samples = pattern_samples()
    results = page.evaluate(
        """(samples) => {
            const out = {};
            for (const [pattern, values] of Object.entries(samples)) {
                try {
                    const re = new RegExp(pattern, "u");
                    out[pattern] = values.map((v) => re.test(v));
                } catch (e) {
                    out[pattern] = String(e);
                }
            }
            return out;
        }""",
        samples,
    )
    for pattern, values in samples.items():
        answer = results[pattern]
        check(isinstance(answer, list), f"pattern {pattern!r} is not ECMA-262: {answer}")
        for value, ecma in zip(values, answer, strict=True):
            python = bool(re.search(pattern, value))
            check(python == ecma, f"pattern {pattern!r} on {value!r}: Python {python}, ECMA-262 {ecma}")
    return len(samples)


def open_form(page: Any, url: str) -> None:
    """The DAG's page, then its Trigger button: the form's modal with its sections."""
    page.goto(f"{url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    page.get_by_test_id("trigger-dag-submit").wait_for()


def open_section(page: Any, section: str) -> None:
    """Open one section of the form (one is open at a time)."""
    trigger = page.get_by_role("button", name=section, exact=True)
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()


def form_state(page: Any) -> dict[str, Any]:
    """What the form shows: sections in error, and each field's title, help and required mark."""
    return page.evaluate(
        """() => {
            const sections = [...document.querySelectorAll('[data-part=item-trigger]')]
                .filter((t) => t.querySelector('p svg'))  // the form's error icon beside a section's title
                .map((t) => t.innerText.trim());
            const fields = {};
            for (const root of document.querySelectorAll('[data-scope=field][data-part=root]')) {
                // each field's control has the id element_<name> ("number-input:element_<name>"...)
                const named = root.querySelector('[id^=element_], [id*=":element_"]');
                if (!named) continue;
                const name = named.id.replace(/^[a-z-]+:/, '').split(':')[0].slice('element_'.length);
                const label = root.querySelector('label');
                const help = root.querySelector('[data-part=helper-text]');
                fields[name] = {
                    title: label ? label.innerText.replace('*', '').trim() : null,
                    required: !!(label && label.hasAttribute('data-required')),
                    help: help ? help.innerText.trim() : null,
                };
            }
            return {sections_in_error: sections, fields};
        }"""
    )


def check_form_defaults(page: Any, artefacts: Path) -> dict[str, Any]:
    """The form as it opens: no section in error, Trigger enabled, titles, help and required marks."""
    from playwright.sync_api import expect

    from deeplens_pipeline.params import PARAM_SPECS

    page.screenshot(path=str(artefacts / "1-form-opens.png"))
    state = form_state(page)
    check(not state["sections_in_error"], f"sections open in error: {state['sections_in_error']}")
    expect(page.get_by_test_id("trigger-dag-submit")).to_be_enabled()
    fields = state["fields"]
    check(
        set(fields) == set(PARAM_SPECS),
        f"the form's fields differ from the Params: {sorted(set(fields) ^ set(PARAM_SPECS))}",
    )
    for name, spec in PARAM_SPECS.items():
        shown = fields[name]
        check(shown["title"] == spec.title, f"{name}: title {shown['title']!r}, expected {spec.title!r}")
        check(shown["help"] == spec.description, f"{name}: help {shown['help']!r}")
        check(
            shown["required"] != spec.optional,
            f"{name}: marked {'required' if shown['required'] else 'optional'}",
        )
    for section in ("Images", "Training", "Device"):
        open_section(page, section)
        page.screenshot(path=str(artefacts / f"2-section-{section.lower()}.png"))
    return {
        "sections_in_error": state["sections_in_error"],
        "optional": sorted(name for name, shown in fields.items() if not shown["required"]),
    }


def check_bad_bucket(page: Any, stack: Airflow, artefacts: Path) -> str:
    """A bad bucket: Airflow refuses the run with the rule in words (not the regex); no run starts."""
    from deeplens_pipeline.params import BUCKET_PATTERN, BUCKET_RULE

    before = {run["dag_run_id"] for run in stack.runs()}
    open_section(page, "AWS")
    page.locator("#element_bucket").fill(BAD_BUCKET)
    page.get_by_test_id("trigger-dag-submit").click()
    alert = page.get_by_role("dialog").get_by_text("Invalid input for param bucket")
    alert.wait_for()
    alert.scroll_into_view_if_needed()
    page.screenshot(path=str(artefacts / "3-bad-bucket-refused.png"))
    message = alert.inner_text()
    check(
        message.startswith(f'Invalid input for param bucket: "{BUCKET_RULE}" was expected'),
        f"the form's message for a bad bucket is not the rule in words: {message!r}",
    )
    page_text = page.get_by_role("dialog").inner_text()
    check(BUCKET_PATTERN not in page_text and "does not match" not in page_text, "the form shows the regex")
    check({run["dag_run_id"] for run in stack.runs()} == before, "a run started with a bad bucket")
    return message.splitlines()[0]


def check_trigger_starts_a_run(page: Any, stack: Airflow, artefacts: Path) -> dict[str, Any]:
    """The defaults plus a bucket (and optional fields cleared, sent as null) start a run."""
    from deeplens_pipeline.params import validate_params

    before = {run["dag_run_id"] for run in stack.runs()}
    open_section(page, "AWS")
    page.locator("#element_bucket").fill(BUCKET)
    open_section(page, "Device")
    host = page.locator("#element_ssh_host")
    host.fill("10.0")
    host.fill("")  # a cleared field: the form sends null
    page.screenshot(path=str(artefacts / "4-defaults-plus-bucket.png"))
    page.get_by_test_id("trigger-dag-submit").click()
    runs = stack.wait_for(
        "the run to appear", lambda: [r for r in stack.runs() if r["dag_run_id"] not in before], 120
    )
    (run,) = runs
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/**", timeout=120_000)  # the form opens the new run's page
    check(run["state"] in ("queued", "running"), f"the run is {run['state']}")
    conf = run["conf"]
    check(conf.get("bucket") == BUCKET, f"the run's conf: {conf}")
    checked = validate_params(conf)  # what the operators read: null → "" again
    check(checked["ssh_host"] == "" and checked["bucket"] == BUCKET, f"checked config: {checked}")
    page.get_by_text("Dag run has been successfully triggered").first.wait_for()
    page.screenshot(path=str(artefacts / "5-run-started.png"))
    return {
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "conf_nulls": sorted(k for k, v in conf.items() if v is None),
    }


def run_form_checks(stack: Airflow, chromium: str, artefacts: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    report: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            report["patterns_checked"] = check_patterns_in_browser(page)
            open_form(page, stack.url)
            report["form"] = check_form_defaults(page, artefacts)
            report["bad_bucket_message"] = check_bad_bucket(page, stack, artefacts)
            report["run"] = check_trigger_starts_a_run(page, stack, artefacts)
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(artefacts / "failure.png"))
            raise
        finally:
            browser.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artefacts", type=Path, default=ROOT / "build" / "trigger-form")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for Airflow to come up")
    parser.add_argument("--url", help="check an Airflow already running there (all admins), start none")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(
            "no Chromium: install Debian's chromium (apt-get install chromium) or set $CHROMIUM",
            file=sys.stderr,
        )
        return EXIT_NO_BROWSER
    artefacts = args.artefacts.resolve()
    shutil.rmtree(artefacts, ignore_errors=True)
    artefacts.mkdir(parents=True)
    started = time.monotonic()
    try:
        if args.url:
            with tempfile.TemporaryDirectory(prefix="deeplens-form-airflow-") as home:
                stack = Airflow(Path(home), artefacts, 0)
                stack.url = args.url.rstrip("/")
                report = run_form_checks(stack, chromium, artefacts)
        else:
            with airflow_running(artefacts, args.timeout) as stack:
                report = run_form_checks(stack, chromium, artefacts)
    except AirflowStackError as err:  # CheckFailed, or the local Airflow failing
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    report["seconds"] = round(time.monotonic() - started, 1)
    (artefacts / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
