"""Wait in the triggerer until Label Studio's annotators have answered this run's tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from deeplens_pipeline.hooks.label_studio import (
    LabelStudioAuthError,
    answered_counts,
    server_from_connection,
)


class LabelStudioTasksTrigger(BaseTrigger):
    """Polls the project's tasks until every one of ``task_ids`` is annotated or skipped.

    Events: ``success`` (all answered), ``timeout`` (``deadline``, a Unix time, passed: the operator
    takes what was labelled), ``error`` (the token was refused: waiting cannot help). A server
    that does not answer is not an error: the trigger logs it and tries again with a growing pause
    (up to ``max_backoff`` seconds). The first poll comes one ``poll_seconds`` after the deferral:
    the operator has just checked the tasks (apache/airflow#72716).
    """

    def __init__(
        self,
        *,
        conn_id: str,
        project_id: int,
        task_ids: list[int],
        poll_seconds: int,
        deadline: float,
        max_backoff: int = 600,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.project_id = project_id
        self.task_ids = list(task_ids)
        self.poll_seconds = poll_seconds
        self.deadline = deadline
        self.max_backoff = max_backoff

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "project_id": self.project_id,
                "task_ids": self.task_ids,
                "poll_seconds": self.poll_seconds,
                "deadline": self.deadline,
                "max_backoff": self.max_backoff,
            },
        )

    async def _server(self) -> Any:
        from asgiref.sync import sync_to_async

        return await sync_to_async(server_from_connection)(self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wanted = set(self.task_ids)
        await asyncio.sleep(min(self.poll_seconds, max(0.0, self.deadline - time.time())))
        failures = 0
        answered = 0
        while True:
            try:
                server = await self._server()
                answered, seen = await answered_counts(server, self.project_id, wanted)
            except LabelStudioAuthError as err:
                yield TriggerEvent({"status": "error", "message": str(err)})
                return
            except (httpx.TransportError, httpx.HTTPStatusError) as err:
                failures += 1
                pause = min(self.max_backoff, self.poll_seconds * 2**failures)
                self.log.warning(
                    "Label Studio (connection %s) did not answer (%s: %s); still waiting, next try in %d s",
                    self.conn_id,
                    type(err).__name__,
                    err,
                    pause,
                )
            else:
                failures = 0
                pause = self.poll_seconds
                # A task deleted in Label Studio is waited for no longer (its image is reported).
                done = answered + (len(wanted) - seen)
                self.log.info(
                    "Label Studio project %s: %d of %d task(s) answered",
                    self.project_id,
                    answered,
                    len(wanted),
                )
                if done >= len(wanted):
                    yield TriggerEvent({"status": "success", "answered": answered, "tasks": len(wanted)})
                    return
            left = self.deadline - time.time()
            if left <= 0:
                self.log.info("Labelling time is up: %d of %d task(s) answered", answered, len(wanted))
                yield TriggerEvent({"status": "timeout", "answered": answered, "tasks": len(wanted)})
                return
            await asyncio.sleep(min(pause, left))
