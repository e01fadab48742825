"""Progress lines: counts and rate at intervals."""

from __future__ import annotations

import logging

from deeplens_pipeline.images.progress import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_logged_at_intervals_with_rate_and_eta(caplog):
    clock = Clock()
    progress = ProgressLog(logging.getLogger("test.progress"), interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        progress("preprocess", 0, 100)
        for done in range(1, 101):
            clock.now = done * 0.5  # 2 images per second
            progress("preprocess", done, 100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "preprocess: 0/100 (0%) 0.0/s, starting"
    assert lines[1] == "preprocess: 20/100 (20%) 2.0/s, eta 40 s"
    assert lines[-1] == "preprocess: 100/100 (100%) 2.0/s, done in 50.0 s"
    assert len(lines) == 6  # the start, then every 10 s (the end falls on one)


def test_one_log_serves_shard_after_shard_with_its_own_rate_and_duration(caplog):
    """The command line runs every shard with one ProgressLog: before, the second shard's rate and
    "done in" were measured from the first shard's start (here 10/s over 60 s, not 1/s over 10 s)."""
    clock = Clock()
    progress = ProgressLog(logging.getLogger("test.progress"), interval=100, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for shard_start in (0.0, 50.0):
            clock.now = shard_start
            progress("preprocess", 0, 10)
            for done in range(1, 11):
                clock.now = shard_start + done
                progress("preprocess", done, 10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "preprocess: 0/10 (0%) 0.0/s, starting",
        "preprocess: 10/10 (100%) 1.0/s, done in 10.0 s",
        "preprocess: 0/10 (0%) 0.0/s, starting",
        "preprocess: 10/10 (100%) 1.0/s, done in 10.0 s",
    ]
