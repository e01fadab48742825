"""What the Greengrass V1 core tells a Lambda function process, read once at import."""

import os

AUTH_TOKEN = os.getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
MY_FUNCTION_ARN = os.getenv("MY_FUNCTION_ARN")
SHADOW_FUNCTION_ARN = os.getenv("SHADOW_FUNCTION_ARN")
ROUTER_FUNCTION_ARN = os.getenv("ROUTER_FUNCTION_ARN")
GG_DAEMON_PORT = os.getenv("GG_DAEMON_PORT", "8000")
GGC_MAX_INTERFACE_VERSION = os.getenv("GGC_MAX_INTERFACE_VERSION")
