"""Putting a model and the inference function on a device, behind one interface (no Airflow here).

Three deployers implement :class:`~deeplens_pipeline.deploy.base.DeviceDeployer`:
``greengrass_v1`` (the classic DeepLens path), ``greengrass_v2`` (a component on a Greengrass V2
core) and ``ssh`` (straight to the device, which works after DeepLens device management closed).
"""

from deeplens_pipeline.deploy.base import (
    FINAL_STATES,
    METHODS,
    DeploymentHandle,
    DeploymentRequest,
    DeploymentStatus,
    DeviceDeployer,
)
from deeplens_pipeline.deploy.inference_settings import InferenceSettings

__all__ = [
    "FINAL_STATES",
    "METHODS",
    "DeploymentHandle",
    "DeploymentRequest",
    "DeploymentStatus",
    "DeviceDeployer",
    "InferenceSettings",
]
