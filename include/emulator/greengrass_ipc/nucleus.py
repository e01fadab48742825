"""The Greengrass V2 nucleus's IPC server: event-stream RPC on a Unix socket.

What a component's ``GreengrassCoreIPCClientV2`` (awsiotsdk) talks to on a core device:

1. the client connects to ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and sends
   CONNECT with header ``:version`` 0.1.0 and payload ``{"authToken": "<SVCUID>"}``; the nucleus
   answers CONNECT_ACK with the CONNECTION_ACCEPTED flag when the token is a component's, and
   without it otherwise (the SDK then raises ``AccessDeniedError``);
2. each operation is a new stream: APPLICATION_MESSAGE with headers ``operation``
   (``aws.greengrass#PublishToIoTCore``), ``service-model-type`` and ``:content-type``
   ``application/json``; the answer is one APPLICATION_MESSAGE (``...Response``) or an
   APPLICATION_ERROR (``aws.greengrass#UnauthorizedError`` etc., JSON ``{"message": ...}``),
   with TERMINATE_STREAM.

Only ``PublishToIoTCore`` is implemented (what the inference function uses); other operations
are answered with ``ServiceError`` naming the emulator's limit. An authorised publish goes to the
MQTT broker through the core's uplink; a failed one answers ``ServiceError`` as the nucleus does.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import socketserver
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from emulator.greengrass_ipc import eventstream as es
from emulator.greengrass_ipc.access_control import (
    MQTT_PROXY,
    PUBLISH_TO_IOT_CORE,
    AuthorizationError,
    Policy,
    authorize,
    parse_access_control,
)
from emulator.greengrass_ipc.forwarder import BrokerForwarder, PublishFailed

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "0.1.0"
JSON = "application/json"
SOCKET_VARIABLE = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
LEGACY_SOCKET_VARIABLE = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"
TOKEN_VARIABLE = "SVCUID"
REFUSED_LINGER_SECONDS = 2.0
QOS = {"0": 0, "1": 1}
"""``PublishToIoTCoreRequest.qos``: AT_MOST_ONCE, AT_LEAST_ONCE."""


class OperationError(Exception):
    """An APPLICATION_ERROR answer: the error shape's model name and message."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model = model
        self.message = message


class _Connection(socketserver.StreamRequestHandler):
    server: _UnixServer

    def handle(self) -> None:
        nucleus = self.server.nucleus
        stream: BinaryIO = self.rfile
        try:
            first = es.read_message(stream)
            if first is None:
                return
            component = nucleus.accept(first)
            self._send(es.CONNECT_ACK, 0, es.CONNECTION_ACCEPTED if component else 0)
            if component is None:
                self._await_client_close()
                return
            while True:
                message = es.read_message(stream)
                if message is None:
                    return
                self._dispatch(nucleus, component, message)
        except es.FramingError as exc:
            logger.warning("IPC connection closed: %s", exc)
            self._send(es.PROTOCOL_ERROR, 0, 0, json.dumps({"message": str(exc)}).encode())
        except OSError:
            return

    def _await_client_close(self) -> None:
        """Leave the refused client time to read the CONNECT_ACK and close first (as the SDK does)."""
        self.connection.settimeout(REFUSED_LINGER_SECONDS)
        try:
            while self.connection.recv(4096):
                pass
        except OSError:
            pass

    def _send(
        self, kind: int, stream_id: int, flags: int, payload: bytes = b"", extra: tuple[es.Header, ...] = ()
    ) -> None:
        headers = [
            es.int32(es.MESSAGE_TYPE, kind),
            es.int32(es.MESSAGE_FLAGS, flags),
            es.int32(es.STREAM_ID, stream_id),
        ]
        self.wfile.write(es.encode(es.Message([*headers, *extra], payload)))
        self.wfile.flush()

    def _dispatch(self, nucleus: NucleusIpcServer, component: str, message: es.Message) -> None:
        kind = message.header(es.MESSAGE_TYPE)
        stream_id = message.header(es.STREAM_ID)
        if kind == es.PING:
            self._send(es.PING_RESPONSE, 0, 0)
            return
        if kind != es.APPLICATION_MESSAGE or not isinstance(stream_id, int) or stream_id <= 0:
            return  # stream termination, or a protocol message the nucleus ignores
        operation = message.header(es.OPERATION)
        if operation is None:
            return  # a later message on an open stream (none of our operations streams)
        try:
            model, body = nucleus.handle(component, str(operation), message.payload)
            kind, payload = es.APPLICATION_MESSAGE, json.dumps(body).encode()
        except OperationError as error:
            model, kind = error.model, es.APPLICATION_ERROR
            payload = json.dumps({"message": error.message}).encode()
        extra = [es.string(es.CONTENT_TYPE, JSON), es.string(es.SERVICE_MODEL_TYPE, model)]
        self._send(kind, stream_id, es.TERMINATE_STREAM, payload, extra)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    nucleus: NucleusIpcServer


class NucleusIpcServer:
    """The nucleus IPC socket for the components of one core device, forwarding to an MQTT broker.

    ``register_component(name, access_control)`` gives a component its SVCUID and policies;
    ``component_environment(name)`` is what the nucleus puts in that component's processes.
    """

    def __init__(
        self,
        broker_host: str,
        broker_port: int,
        *,
        socket_path: str | Path | None = None,
        thing_name: str | None = None,
        region: str | None = None,
    ) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if socket_path is None:
            # AF_UNIX paths are limited to 107 bytes: a short folder under /tmp.
            self._tempdir = tempfile.TemporaryDirectory(prefix="ggipc-", dir="/tmp")
            socket_path = Path(self._tempdir.name) / "ipc.socket"
        self.socket_path = Path(socket_path)
        self.thing_name = thing_name
        self.region = region
        self.forwarder = BrokerForwarder(
            broker_host, broker_port, client_id=f"nucleus-{thing_name or 'core'}"
        )
        self._tokens: dict[str, str] = {}
        self._policies: dict[str, list[Policy]] = {}
        self._lock = threading.Lock()
        self._server: _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self.published: list[tuple[str, str, bytes]] = []
        """(component, topic, payload) of every message forwarded to the broker."""

    def register_component(self, name: str, access_control: Mapping[str, Any] | None = None) -> str:
        """Give ``name`` its IPC token (reused if registered) and load its ``accessControl``."""
        policies = parse_access_control(access_control)
        with self._lock:
            token = next((t for t, n in self._tokens.items() if n == name), None) or secrets.token_hex(16)
            self._tokens[token] = name
            self._policies[name] = policies
        return token

    def component_environment(self, name: str) -> dict[str, str]:
        """The variables the nucleus sets for a process of component ``name`` (registered first)."""
        with self._lock:
            token = next((t for t, n in self._tokens.items() if n == name), None)
        if token is None:
            raise KeyError(f"component {name!r} is not registered with this nucleus (register_component)")
        env = {SOCKET_VARIABLE: str(self.socket_path), LEGACY_SOCKET_VARIABLE: str(self.socket_path)}
        env[TOKEN_VARIABLE] = token
        if self.thing_name:
            env["AWS_IOT_THING_NAME"] = self.thing_name
        if self.region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        return env

    def accept(self, message: es.Message) -> str | None:
        """The component a CONNECT message authenticates, or None (connection refused)."""
        if message.header(es.MESSAGE_TYPE) != es.CONNECT:
            logger.warning("IPC connection refused: the first message is not CONNECT")
            return None
        if message.header(es.VERSION) != PROTOCOL_VERSION:
            logger.warning("IPC connection refused: protocol version %r", message.header(es.VERSION))
            return None
        try:
            token = json.loads(message.payload or b"{}").get("authToken")
        except (ValueError, AttributeError):
            token = None
        with self._lock:
            component = self._tokens.get(token) if isinstance(token, str) else None
        if component is None:
            logger.warning("IPC connection refused: unknown authToken")
        return component

    def handle(self, component: str, operation: str, payload: bytes) -> tuple[str, dict[str, Any]]:
        """(response model name, response body) of ``operation``; OperationError for an error answer."""
        if operation != PUBLISH_TO_IOT_CORE:
            raise OperationError(
                "aws.greengrass#ServiceError",
                f"operation {operation} is not implemented by the emulated nucleus "
                f"(only {PUBLISH_TO_IOT_CORE})",
            )
        try:
            request = json.loads(payload or b"{}")
            topic = request["topicName"]
            qos = QOS[str(request.get("qos", "1"))]
            data = base64.b64decode(request.get("payload", ""), validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise OperationError(
                "aws.greengrass#InvalidArgumentsError", f"invalid PublishToIoTCore request: {exc}"
            ) from exc
        with self._lock:
            policies = list(self._policies.get(component, []))
        try:
            authorize(component, policies, MQTT_PROXY, PUBLISH_TO_IOT_CORE, topic)
        except AuthorizationError as exc:
            logger.error("Not Authorized: %s", exc)
            raise OperationError(
                "aws.greengrass#UnauthorizedError", f"Authorization failed with error {exc}"
            ) from exc
        try:
            self.forwarder.publish(topic, data, qos)
        except PublishFailed as exc:
            raise OperationError(
                "aws.greengrass#ServiceError", f"Publish to topic {topic} failed with error {exc}"
            ) from exc
        self.published.append((component, topic, data))
        return "aws.greengrass#PublishToIoTCoreResponse", {}

    def start(self) -> NucleusIpcServer:
        """Connect the uplink and listen on the socket."""
        self.forwarder.start()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()
        self._server = _UnixServer(str(self.socket_path), _Connection)
        self._server.nucleus = self
        self.socket_path.chmod(0o666)
        self._thread = threading.Thread(target=self._server.serve_forever, name="nucleus-ipc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, disconnect the uplink and remove the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.forwarder.stop()
        if self.socket_path.exists():
            self.socket_path.unlink()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> NucleusIpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
