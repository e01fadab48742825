"""SageMaker model names are taken once: CreateModel refuses a name that exists (moto replaced it).

AWS answers ``ValidationException: Cannot create already existing model "<arn>".`` (the message
users of the SageMaker Python SDK and of Airflow's SageMaker operators meet on a retry:
aws/sagemaker-python-sdk#306, astronomer/astronomer-providers#1055); moto 5.2.5 silently replaced
the model, so a task that created its model twice (the evaluation's or the pre-labelling's, on a
retry) would pass here and fail on AWS. The pipeline describes its model first and creates it only
when it is missing.
"""

from __future__ import annotations

from typing import Any

from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter


def _refuse_existing(handler: Any) -> Any:
    def create_model(self: SageMakerResponse) -> Any:
        name = self._get_param("ModelName")
        backend = self.sagemaker_backend
        if name in backend._models:
            arn = arn_formatter("model", name, backend.account_id, backend.region_name)
            raise ValidationError(message=f'Cannot create already existing model "{arn}".')
        return handler(self)

    create_model.__name__ = "create_model"
    create_model.__wrapped__ = handler  # type: ignore[attr-defined]
    create_model._emulator_model_names = True  # type: ignore[attr-defined]
    return create_model


def register() -> None:
    """Put the check in front of moto's CreateModel handler (idempotent)."""
    handler = SageMakerResponse.create_model
    if getattr(handler, "_emulator_model_names", False):
        return
    SageMakerResponse.create_model = _refuse_existing(handler)  # type: ignore[method-assign]
