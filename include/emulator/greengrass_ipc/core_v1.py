"""The Greengrass V1 core's local IPC server, as a DeepLens's Lambda functions reach it.

``greengrasssdk.client('iot-data').publish(topic=..., payload=...)`` posts the message to the
core's router function through the runtime's ``IPCClient`` (see ``lambda_runtime/``):

    POST http://localhost:$GG_DAEMON_PORT/2016-11-01/functions/arn:aws:lambda:::function:GGRouter
    Authorization: <the function's AWS_CONTAINER_AUTHORIZATION_TOKEN>
    X-Amz-Invocation-Type: Event
    X-Amz-Client-Context: base64(JSON {"custom": {"source": <MY_FUNCTION_ARN>, "subject": <topic>}})
    <payload as the body>

The server checks the token (unknown or missing: 401; a token used for another function's
ARN: 403), answers 202 with ``X-Amz-InvocationId``, and routes the message as the group's
subscriptions say: a subscription whose ``Source`` is the function's ARN, ``Target`` is
``cloud`` and ``Subject`` (an MQTT filter) matches the topic sends it to the MQTT broker; a
message no subscription matches is dropped and logged, as the core's router does (the function
is not told). The Greengrass V1 core itself is closed source: the status codes chosen for a bad
token are the emulator's; the request shape is the runtime's.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from emulator.greengrass_ipc.forwarder import BrokerForwarder, PublishFailed
from emulator.greengrass_ipc.topics import mqtt_filter_matches

logger = logging.getLogger(__name__)

API_VERSION = "2016-11-01"
ROUTER_FUNCTION_ARN = "arn:aws:lambda:::function:GGRouter"
SHADOW_FUNCTION_ARN = "arn:aws:lambda:::function:GGShadowService"
CLOUD = "cloud"
GGC_MAX_INTERFACE_VERSION = "1.5"
LAMBDA_RUNTIME_PATH = Path(__file__).resolve().parent / "lambda_runtime"
"""Folder with the core runtime's ``greengrass_common`` and ``greengrass_ipc_python_sdk``."""


@dataclass(frozen=True)
class Subscription:
    """A Greengrass group subscription (``SubscriptionDefinitionVersion.Subscriptions[]``)."""

    source: str
    subject: str
    target: str = CLOUD

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Subscription:
        """From the API's ``{"Id", "Source", "Subject", "Target"}`` shape."""
        return cls(source=body["Source"], subject=body["Subject"], target=body["Target"])


@dataclass(frozen=True)
class RoutedMessage:
    """A message a function sent: where it came from, its topic, and whether it reached the broker."""

    source: str
    topic: str
    payload: bytes
    delivered: bool


class _Handler(BaseHTTPRequestHandler):
    server: _CoreHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("core IPC: " + format, *args)

    def _answer(self, status: int, message: str = "", headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"message": message}).encode() if message else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        status, message, headers = self.server.core.post_work(self.path, dict(self.headers.items()), payload)
        self._answer(status, message, headers)

    def do_GET(self) -> None:
        self._answer(404, f"{self.path}: only message publishing (POST to GGRouter) is emulated")


class _CoreHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    core: GreengrassV1CoreIpc


class GreengrassV1CoreIpc:
    """The V1 core's IPC server on 127.0.0.1 (ephemeral port), routing to an MQTT broker."""

    def __init__(
        self,
        broker_host: str,
        broker_port: int,
        subscriptions: list[Subscription] | None = None,
        *,
        thing_name: str | None = None,
        region: str | None = None,
    ) -> None:
        self.subscriptions = list(subscriptions or [])
        self.thing_name = thing_name
        self.region = region
        self.forwarder = BrokerForwarder(broker_host, broker_port, client_id=f"ggc-v1-{thing_name or 'core'}")
        self.routed: list[RoutedMessage] = []
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: _CoreHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The IPC server's port (``GG_DAEMON_PORT``)."""
        if self._server is None:
            raise RuntimeError("the core IPC server is not started")
        return int(self._server.server_address[1])

    def function_environment(self, function_arn: str) -> dict[str, str]:
        """The variables the core gives a Python Lambda function process running ``function_arn``.

        Includes ``PYTHONPATH`` with the core runtime's modules (``LAMBDA_RUNTIME_PATH``); a
        launcher that adds its own folders must keep it.
        """
        with self._lock:
            token = next((t for t, arn in self._tokens.items() if arn == function_arn), None)
            if token is None:
                token = secrets.token_hex(16)
                self._tokens[token] = function_arn
        env = {
            "MY_FUNCTION_ARN": function_arn,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
            "ROUTER_FUNCTION_ARN": ROUTER_FUNCTION_ARN,
            "SHADOW_FUNCTION_ARN": SHADOW_FUNCTION_ARN,
            "GG_DAEMON_PORT": str(self.port),
            "GGC_MAX_INTERFACE_VERSION": GGC_MAX_INTERFACE_VERSION,
            "PYTHONPATH": str(LAMBDA_RUNTIME_PATH),
        }
        if self.thing_name:
            env["AWS_IOT_THING_NAME"] = self.thing_name
        if self.region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        return env

    def post_work(
        self, path: str, headers: dict[str, str], payload: bytes
    ) -> tuple[int, str, dict[str, str]]:
        """(status, error message, response headers) of a POST from a function."""
        headers = {name.lower(): value for name, value in headers.items()}
        prefix = f"/{API_VERSION}/functions/"
        if not path.startswith(prefix):
            return 404, f"unknown IPC path {path}", {}
        target = path[len(prefix) :]
        with self._lock:
            caller = self._tokens.get(headers.get("authorization", ""))
        if caller is None:
            logger.warning("core IPC: refused a request to %s with a missing or unknown token", target)
            return 401, "the Authorization token is not a deployed function's", {}
        if target != ROUTER_FUNCTION_ARN:
            return 404, f"function {target} is not emulated (only publishing through GGRouter)", {}
        try:
            context = json.loads(base64.b64decode(headers.get("x-amz-client-context", ""), validate=True))
            custom = context["custom"]
            source, topic = custom["source"], custom["subject"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return 400, "X-Amz-Client-Context must be base64 JSON with custom.source and custom.subject", {}
        if source != caller:
            return 403, f"the token belongs to {caller}, not to {source}", {}
        self._route(source, topic, payload)
        return 202, "", {"X-Amz-InvocationId": str(uuid.uuid4())}

    def _route(self, source: str, topic: str, payload: bytes) -> None:
        matched = [
            s
            for s in self.subscriptions
            if s.source == source and s.target == CLOUD and mqtt_filter_matches(s.subject, topic)
        ]
        delivered = False
        if not matched:
            logger.warning(
                "core router: no subscription from %s to the cloud matches %s; dropped", source, topic
            )
        else:
            try:
                self.forwarder.publish(topic, payload, qos=0)
                delivered = True
            except PublishFailed as exc:
                logger.error("core router: could not send %s to the cloud: %s", topic, exc)
        with self._lock:
            self.routed.append(RoutedMessage(source, topic, payload, delivered))

    def start(self) -> GreengrassV1CoreIpc:
        """Connect the uplink and serve on 127.0.0.1."""
        self.forwarder.start()
        self._server = _CoreHttpServer(("127.0.0.1", 0), _Handler)
        self._server.core = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="ggc-v1-ipc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and disconnect."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.forwarder.stop()

    def __enter__(self) -> GreengrassV1CoreIpc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
