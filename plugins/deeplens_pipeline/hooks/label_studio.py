"""The team's Label Studio server, reached through one Airflow connection (URL + API token).

The connection: type ``http`` (any type works), host the server's URL (``https://ls.example.com``
or host and port), password an API token from the server's "Account & Settings" page (a legacy
token or a personal access token: both work). Its extra may carry what Label Studio's S3 storage
needs to presign the bucket's images: ``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``, ``region_name``, ``s3_endpoint`` (left out: the server's own AWS
credentials, e.g. its instance role), and ``presign_ttl`` (minutes, default 60).

Operators use the official ``label-studio-sdk`` (it resolves under MWAA 3.3.1's constraints). Its
import costs seconds of CPU, so it is imported only inside tasks; the trigger, which shares the
triggerer's event loop with every other trigger, makes its few reads with ``httpx`` instead.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_CONN_ID = "label_studio_default"


class LabelStudioAuthError(RuntimeError):
    """The server refused the connection's token: retrying cannot help."""


@dataclass(frozen=True)
class LabelStudioServer:
    """Where the server is and how to sign in; what S3 storage settings the connection carries."""

    conn_id: str
    url: str
    token: str
    storage: dict[str, Any]

    def refused(self, status: int, detail: str = "") -> LabelStudioAuthError:
        """The error for a refused token, naming the connection and what to do."""
        return LabelStudioAuthError(
            f"connection {self.conn_id!r}: Label Studio at {self.url} refused its token (HTTP {status}"
            f"{': ' + detail if detail else ''}). Put an API token from the server's Account & Settings "
            "page in the connection's password."
        )


def server_from_connection(conn_id: str = DEFAULT_CONN_ID) -> LabelStudioServer:
    """Read the Airflow connection ``conn_id`` (the error names it when it is missing or empty)."""
    from deeplens_pipeline.airflow_compat import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as err:  # AirflowNotFoundException, across Airflow versions
        raise LabelStudioAuthError(
            f"no Airflow connection {conn_id!r}: create it with the Label Studio server's URL as host and "
            f"an API token as password ({err})"
        ) from None
    host = (conn.host or "").rstrip("/")
    if not host:
        raise LabelStudioAuthError(f"connection {conn_id!r} has no host: set it to the Label Studio URL")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    if not conn.password:
        raise LabelStudioAuthError(
            f"connection {conn_id!r} has no password: put a Label Studio API token there"
        )
    extra = conn.extra_dejson or {}
    return LabelStudioServer(conn_id=conn_id, url=host, token=conn.password, storage=dict(extra))


def is_jwt(token: str) -> bool:
    """Whether ``token`` is a personal access token (a JWT refresh token) rather than a legacy token."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


def sdk_client(server: LabelStudioServer, timeout: float = 60) -> Any:
    """The SDK's client for ``server``, with the token checked (a clear error when refused)."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    try:
        client = LabelStudio(base_url=server.url, api_key=server.token, timeout=timeout)
        client.users.whoami()
    except ApiError as err:
        if err.status_code in (401, 403):
            raise server.refused(err.status_code, str(err.body or "")) from None
        raise
    return client


async def auth_headers(server: LabelStudioServer, client: httpx.AsyncClient) -> dict[str, str]:
    """The Authorization header for ``server``: ``Token`` for a legacy token, else a fresh access JWT."""
    if not is_jwt(server.token):
        return {"Authorization": f"Token {server.token}"}
    response = await client.post(f"{server.url}/api/token/refresh", json={"refresh": server.token})
    if response.status_code in (401, 403):
        raise server.refused(response.status_code, response.text[:200])
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access']}"}


async def answered_counts(
    server: LabelStudioServer, project_id: int, task_ids: set[int], *, page_size: int = 500
) -> tuple[int, int]:
    """How many of ``task_ids`` are answered (annotated or skipped), and how many of them exist.

    Raises :class:`LabelStudioAuthError` on a refused token; connection errors propagate (the
    trigger waits and tries again).
    """
    from deeplens_pipeline.label_studio import is_answered

    answered = seen = 0
    async with httpx.AsyncClient(timeout=60) as client:
        headers = await auth_headers(server, client)
        page = 1
        while True:
            response = await client.get(
                f"{server.url}/api/tasks",
                params={
                    "project": project_id,
                    "page": page,
                    "page_size": page_size,
                    "fields": "task_only",
                    "resolve_uri": "false",
                },
                headers=headers,
            )
            if response.status_code in (401, 403):
                raise server.refused(response.status_code, response.text[:200])
            if response.status_code == 404 and page > 1:
                break  # past the last page
            response.raise_for_status()
            body = response.json()
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            for task in tasks:
                if task.get("id") in task_ids:
                    seen += 1
                    answered += is_answered(task)
            total = body.get("total", 0) if isinstance(body, dict) else len(tasks)
            if not tasks or page * page_size >= total:
                break
            page += 1
    return answered, seen
