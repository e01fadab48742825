"""Our extension of moto: what moto 5.2.5 lacks for this pipeline, kept apart from moto itself.

- :mod:`.groundtruth`: Ground Truth labelling jobs and work teams, with a simulated workforce.
- :mod:`.training`: training jobs that run over real time and write a real ``model.tar.gz``
  (produced by the ML tools environment), and tuning jobs made of such training jobs.
- :mod:`.greengrass`: a simulated DeepLens that applies Greengrass V1 deployments.
- :mod:`.greengrass_v2`: Greengrass V2 components and deployments, and a simulated V2 core device.
- :mod:`.s3_notifications`: S3's checks of a bucket's event notifications (overlaps, destinations).
- :mod:`.transform`: batch transform jobs that run the model on each input (ML tools environment).
- :mod:`.model_registry`: model package groups and versions as SageMaker keeps them.
- :mod:`.model_names`: CreateModel refuses a model name that exists, as SageMaker does.

:func:`install` registers them on moto's response classes and backends at start-up; it is
idempotent. The DAG talks to the emulator only over HTTP through boto3, as it would to AWS.
"""

from __future__ import annotations

from emulator.extension import (
    greengrass,
    greengrass_v2,
    groundtruth,
    model_names,
    model_registry,
    s3_notifications,
    service_rules,
    training,
    transform,
)
from emulator.extension.runtime import Runtime
from emulator.settings import EmulatorSettings

_installed: Runtime | None = None


def install(settings: EmulatorSettings, endpoint_url: str) -> Runtime:
    """Register the extension in this process's moto and return its runtime (call once per server)."""
    global _installed
    settings.validate()
    runtime = Runtime(settings=settings, endpoint_url=endpoint_url)
    if _installed is None:
        groundtruth.register()
        training.register()
        greengrass.register()
        greengrass_v2.register()
        s3_notifications.register()
        transform.register()
        model_registry.register()
        model_names.register()
        service_rules.register()  # after the handlers it wraps (training, groundtruth, transform)
    _installed = runtime
    Runtime.current = runtime
    return runtime
