"""Client of the Greengrass V1 core's local IPC server (HTTP on localhost:$GG_DAEMON_PORT).

``post_work`` is what ``greengrasssdk`` calls to publish (to the GGRouter function) or invoke a
local function: ``POST /2016-11-01/functions/<function ARN>`` with the payload as the body.
"""

import collections
import functools
import logging
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from greengrass_common.env_vars import AUTH_TOKEN, GG_DAEMON_PORT

runtime_logger = logging.getLogger(__name__)

HEADER_INVOCATION_ID = "X-Amz-InvocationId"
HEADER_CLIENT_CONTEXT = "X-Amz-Client-Context"
HEADER_AUTH_TOKEN = "Authorization"
HEADER_INVOCATION_TYPE = "X-Amz-Invocation-Type"
HEADER_FUNCTION_ERR_TYPE = "X-Amz-Function-Error"
IPC_API_VERSION = "2016-11-01"
ROUTER_ARN = "arn:aws:lambda:::function:GGRouter"

WorkItem = collections.namedtuple("WorkItem", ["invocation_id", "payload", "client_context"])
GetWorkResultOutput = collections.namedtuple("GetWorkResultOutput", ["payload", "func_err"])


class IPCException(Exception):
    pass


def _as_bytes(payload):
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return payload


def wrap_urllib_exceptions(func):
    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except HTTPError as error:
            runtime_logger.error("HTTP Error %s:%s, %s", error.code, error.reason, error.read())
            raise IPCException(str(error)) from error
        except URLError as error:
            runtime_logger.exception(error)
            raise IPCException(str(error)) from error

    return wrapped


class IPCClient:
    """Posts work to, and reads results from, the core's IPC server."""

    _GG_DAEMON_PORT = GG_DAEMON_PORT

    @staticmethod
    def set_gg_daemon_port(port):
        IPCClient._GG_DAEMON_PORT = port

    def __init__(self, endpoint="localhost", port=None):
        self.endpoint = endpoint
        self.port = int(IPCClient._GG_DAEMON_PORT)
        self.auth_token = AUTH_TOKEN

    def _get_url(self, function_arn):
        return f"http://{self.endpoint}:{self.port}/{IPC_API_VERSION}/functions/{function_arn}"

    @wrap_urllib_exceptions
    def post_work(self, function_arn, payload, client_context, invocation_type="RequestResponse"):
        """Send a work item (a message or an invocation) to ``function_arn``; the invocation id."""
        request = Request(self._get_url(function_arn), _as_bytes(payload))
        request.add_header(HEADER_CLIENT_CONTEXT, client_context)
        request.add_header(HEADER_AUTH_TOKEN, self.auth_token)
        request.add_header(HEADER_INVOCATION_TYPE, invocation_type)
        response = urlopen(request)
        return response.info().get(HEADER_INVOCATION_ID)

    @wrap_urllib_exceptions
    def get_work_result(self, function_arn, invocation_id):
        """The result of a RequestResponse invocation (GGRouter messages have none)."""
        if function_arn == ROUTER_ARN:
            return GetWorkResultOutput(payload="", func_err="")
        request = Request(self._get_url(function_arn))
        request.add_header(HEADER_INVOCATION_ID, invocation_id)
        request.add_header(HEADER_AUTH_TOKEN, self.auth_token)
        response = urlopen(request)
        return GetWorkResultOutput(
            payload=response.read(), func_err=response.info().get(HEADER_FUNCTION_ERR_TYPE)
        )
