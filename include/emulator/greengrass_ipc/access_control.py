"""Greengrass V2 IPC authorization, as the nucleus's ``AuthorizationHandler`` decides it.

A component's ``accessControl`` configuration maps an IPC service (``aws.greengrass.ipc.mqttproxy``)
to policies, each with ``operations`` and ``resources``; the principal is the component itself.
A request is allowed when one policy of that service lists the operation (or ``*``) and a
resource matching the topic (``topics.resource_matches``). Otherwise the nucleus answers
``UnauthorizedError`` with "Authorization failed with error Principal <component> is not
authorized to perform <service>:<operation> on resource <topic>" (aws-greengrass-nucleus,
``MqttProxyIPCAgent`` and ``AuthorizationHandler.isAuthorized``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.greengrass_ipc.topics import resource_matches

MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"
ANY = "*"


class PolicyError(ValueError):
    """An ``accessControl`` value the nucleus would not load."""


@dataclass(frozen=True)
class Policy:
    """One authorization policy of a component, for one IPC service."""

    service: str
    policy_id: str
    operations: tuple[str, ...]
    resources: tuple[str, ...]

    def allows(self, operation: str, resource: str) -> bool:
        """Whether this policy allows ``operation`` on ``resource``."""
        operation_ok = ANY in self.operations or operation in self.operations
        return operation_ok and any(resource_matches(pattern, resource) for pattern in self.resources)


def parse_access_control(access_control: Mapping[str, Any] | None) -> list[Policy]:
    """The policies of an ``accessControl`` mapping (``{service: {policy id: policy}}``)."""
    policies: list[Policy] = []
    for service, by_id in (access_control or {}).items():
        if not isinstance(by_id, Mapping):
            raise PolicyError(f"accessControl.{service} must map policy ids to policies")
        for policy_id, body in by_id.items():
            if not policy_id or not isinstance(body, Mapping):
                raise PolicyError(f"accessControl.{service}.{policy_id!r} is not a policy")
            operations = body.get("operations") or []
            resources = body.get("resources") or []
            texts = [*operations, *resources]
            if not all(isinstance(text, str) for text in texts):
                raise PolicyError(
                    f"accessControl.{service}.{policy_id}: operations and resources are strings"
                )
            policies.append(Policy(service, policy_id, tuple(operations), tuple(resources)))
    return policies


def recipe_access_control(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``ComponentConfiguration.DefaultConfiguration.accessControl`` of a recipe (``{}`` if none)."""
    configuration = recipe.get("ComponentConfiguration") or {}
    default = configuration.get("DefaultConfiguration") or {}
    return dict(default.get("accessControl") or {})


class AuthorizationError(PermissionError):
    """The component may not perform the operation on the resource."""


def authorize(principal: str, policies: list[Policy], service: str, operation: str, resource: str) -> Policy:
    """The policy allowing ``principal`` to do ``operation`` on ``resource``; AuthorizationError if none."""
    for policy in policies:
        if policy.service == service and policy.allows(operation, resource):
            return policy
    raise AuthorizationError(
        f"Principal {principal} is not authorized to perform {service}:{operation} on resource {resource}"
    )
