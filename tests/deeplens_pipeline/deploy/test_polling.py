"""The polling loop shared by the trigger and the blocking mode, with a status sequence we control."""

from __future__ import annotations

import asyncio
import logging

import pytest

from deeplens_pipeline.deploy.base import DeploymentStatus
from deeplens_pipeline.deploy.polling import wait_for_final_status


class Statuses:
    """A status source returning a scripted sequence (the device's side of the story)."""

    def __init__(self, *states: str, error: str | None = None) -> None:
        self.states = list(states)
        self.error = error
        self.calls = 0

    async def __call__(self) -> DeploymentStatus:
        self.calls += 1
        state = self.states.pop(0)
        return DeploymentStatus(state, self.error if state == "Failure" else None)


def run(statuses: Statuses, max_attempts: int, sleeps: list[float], caplog=None):
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return asyncio.run(
        wait_for_final_status(
            statuses, poll_interval=30, max_attempts=max_attempts, describe="Deployment d-1", sleep=sleep
        )
    )


def test_polls_until_success_logging_every_poll(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    with caplog.at_level(logging.INFO, logger="deeplens_pipeline.deploy.polling"):
        outcome = run(Statuses("InProgress", "Building", "Success"), 10, sleeps)
    assert outcome.status.state == "Success"
    assert (outcome.attempts, outcome.timed_out) == (3, False)
    assert sleeps == [30, 30]
    assert [r.getMessage() for r in caplog.records] == [
        "Deployment d-1: InProgress (poll 1 of 10)",
        "Deployment d-1: Building (poll 2 of 10)",
        "Deployment d-1: Success (poll 3 of 10)",
    ]


def test_failure_ends_the_wait_with_the_error() -> None:
    outcome = run(Statuses("InProgress", "Failure", error="function crashed"), 10, [])
    assert outcome.status.describe() == "Failure: function crashed"
    assert not outcome.timed_out


def test_gives_up_after_max_attempts_without_a_last_sleep() -> None:
    sleeps: list[float] = []
    statuses = Statuses("InProgress", "InProgress", "InProgress", "Success")
    outcome = run(statuses, 3, sleeps)
    assert outcome.timed_out
    assert outcome.status.state == "InProgress"
    assert (statuses.calls, sleeps) == (3, [30, 30])


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        run(Statuses("Success"), 0, [])
    with pytest.raises(ValueError, match="poll_interval"):
        asyncio.run(wait_for_final_status(Statuses("Success"), poll_interval=-1, max_attempts=1))
