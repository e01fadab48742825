"""The Amazon provider's operator contract, without importing the provider when the DAG is parsed.

Every module the DAG file imports is imported again at every parse (the DAG processor parses the
file every 30 s; every task parses it before it runs). The provider's ``AwsBaseOperator`` imports
boto3 and botocore (about a second of CPU), so the operators the DAG file imports build on
:class:`AwsOperator` instead: the same arguments, template fields and ``hook``, with the hook's
class named by its import path and imported on first use, when the task runs.

An operator whose work is a provider operator's (the SageMaker training and tuning tasks) keeps
that work in an operator of its own, in a module only the task imports, and runs it with
:func:`run_operator`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

from deeplens_pipeline.airflow_compat import BaseOperator, run_nested
from deeplens_pipeline.operators.base import ParamsSerializedOnce

AWS_TEMPLATE_FIELDS = ("aws_conn_id", "region_name", "verify")


def aws_template_fields(*template_fields: str) -> tuple[str, ...]:
    """The provider's ``aws_template_fields``: ``template_fields`` and the connection's, sorted."""
    return tuple(sorted({*AWS_TEMPLATE_FIELDS, *template_fields}))


def import_class(path: str) -> Any:
    """The class (or any attribute) at ``package.module.Name``."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class AwsOperator(ParamsSerializedOnce, BaseOperator):
    """``AwsBaseOperator``'s arguments and ``hook``; the hook class imported when first used.

    :param aws_conn_id: The Airflow connection used for AWS credentials (and ``endpoint_url``).
    :param region_name: AWS region; None takes the connection's.
    :param verify: Whether to verify SSL certificates (or a CA bundle's path).
    :param botocore_config: Configuration dictionary for the botocore client.
    """

    aws_hook_class: ClassVar[str]
    """The import path of the provider's hook class this operator talks to AWS through."""
    template_fields: Sequence[str] = aws_template_fields()

    def __init__(
        self,
        *,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    @property
    def aws_connection(self) -> dict[str, Any]:
        """The connection arguments, as every ``AwsBaseOperator`` takes them."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    @cached_property
    def hook(self) -> Any:
        """The provider's hook (``aws_hook_class``) on this operator's connection and region."""
        return import_class(self.aws_hook_class)(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )


def run_operator(operator: BaseOperator, method: str, *args: Any) -> Any:
    """``operator.<method>(*args)``, run as the task's own code (see ``airflow_compat.run_nested``)."""
    return run_nested(operator, method, *args)
