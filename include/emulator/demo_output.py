"""What ``make demo`` shows while the DAG runs: one line per finished task, progress while waiting;
and, at the end, what watching the simulated DeepLens showed (:func:`format_device_watch`).

Airflow's own log (thousands of lines) goes to a file; a thread follows that file and prints to the
terminal one line per task as it finishes (state from the run's database, duration), and, while a
deferred task waits in its trigger, a progress line at most every ``interval`` seconds carrying the
trigger's latest status message.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_RUN = re.compile(r"\[DAG TEST\] running task <TaskInstance: \S+ (?P<run>\S+)")
_TRIGGER = re.compile(r"\[DAG TEST\] running trigger in line")
# A trigger's own status lines: the message between the level and the logger's name.
_STATUS = re.compile(
    r"\[(?:info|warning)\s*\]\s+(?P<message>.*?)\s+\[(?P<logger>[\w.]*trigger[\w.]*)\]", re.I
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

StateLookup = Callable[[str, str, int], str]


@contextlib.contextmanager
def output_to_file(path: Path) -> Iterator[IO[str]]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes and
    loggers too) to ``path``; yield a stream to the real terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()


class TaskProgress(threading.Thread):
    """Follows Airflow's log file and prints each task's end and the waits' progress."""

    def __init__(self, log_path: Path, out: IO[str], state: StateLookup, interval: float = 15.0) -> None:
        super().__init__(name="demo-progress", daemon=True)
        self.log_path = log_path
        self.out = out
        self.state = state
        self.interval = interval
        self.lines: list[str] = []
        self._done = threading.Event()
        self._began: dict[tuple[str, int], float] = {}
        self._run_id = ""
        self._waiting: tuple[str, int] | None = None
        self._last_progress = 0.0
        self._status = ""

    def stop(self) -> None:
        """Read what is left of the log, then stop."""
        self._done.set()
        self.join(10)

    def run(self) -> None:
        with self.log_path.open(errors="replace") as log:
            log.seek(0, os.SEEK_END)
            while True:
                line = log.readline()
                if line:
                    self.feed(_ANSI.sub("", line), time.monotonic())
                    continue
                if self._done.is_set():
                    return
                self.tick(time.monotonic())
                time.sleep(0.2)

    def feed(self, line: str, now: float) -> None:
        """Take one log line."""
        if match := _START.search(line):
            self._began[(match["task"], int(match["index"]))] = now
        elif match := _RUN.search(line):
            self._run_id = match["run"]
        elif _TRIGGER.search(line):
            self._waiting = next(reversed(self._began), None)
            self._last_progress = now
        elif match := _END.search(line):
            key = (match["task"], int(match["index"]))
            self._waiting = None
            self._status = ""
            seconds = now - self._began.pop(key, now)
            name = key[0] + (f"[{key[1]}]" if key[1] >= 0 else "")
            try:
                state = self.state(key[0], self._run_id, key[1])
            except Exception as err:  # the report must never break the run
                state = f"? ({type(err).__name__})"
            self.say(f"  {name:<32} {state:<9} {seconds:7.1f} s")
        elif self._waiting and (match := _STATUS.search(line)):
            self._status = match["message"][:90]

    def tick(self, now: float) -> None:
        """While a task waits in its trigger, say so every ``interval`` seconds."""
        if self._waiting is None or now - self._last_progress < self.interval:
            return
        self._last_progress = now
        task, _ = self._waiting
        waited = now - self._began.get(self._waiting, now)
        self.say(f"  … {task} waiting ({waited:.0f} s){': ' + self._status if self._status else ''}")

    def say(self, text: str) -> None:
        """Print to the terminal (and keep the line for the tests)."""
        self.lines.append(text)
        print(text, file=self.out, flush=True)


def format_device_watch(watched: dict[str, Any], untrained: bool = False) -> str:
    """The summary's device section, from ``device_watch.WatchSummary.as_dict()`` (plus ``seconds``):
    frames seen, detections per class (with the best probability), one annotated frame's path.
    ``untrained`` (the demo's ``--training fast``) says the detections are noise."""
    seconds = watched.get("seconds")
    results, empty = watched.get("detection_messages", 0), watched.get("empty_messages", 0)
    lines = [
        "Simulated DeepLens" + (f" (watched {seconds:g} s)" if seconds else ""),
        f"  frames seen: {watched.get('frames', 0)}",
        f"  messages: {watched.get('messages', 0)} ({results} detection results, {empty} empty, "
        f"{watched.get('errors', 0)} errors)",
    ]
    per_class = watched.get("detections_per_class") or {}
    best = watched.get("best_probability") or {}
    if not per_class:
        lines.append("  detections per class: none")
    else:
        lines.append("  detections per class:")
        for label, count in sorted(per_class.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"    {label}: {count} (best {best.get(label, 0.0) * 100:.1f}%)")
    lines.append(f"  annotated frame: {watched.get('example_frame') or 'none (no frame was streamed)'}")
    if untrained:
        lines.append("  (an untrained model, --training fast: these detections are noise)")
    return "\n".join(lines)
