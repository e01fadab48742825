"""The Airflow names the pipeline uses, from where each supported Airflow version keeps them.

MWAA runs Airflow 3.3.1, 3.0.6 and 2.11; the DAG and its operators import from here, never from
``airflow.sdk`` directly:

- 3.1 and later: everything from the Task SDK (``airflow.sdk``), as Airflow asks;
- 3.0: the Task SDK lacks ``TriggerRule``, ``BaseBranchOperator``, ``BaseHook`` and the exceptions;
  they come from ``airflow.utils``, the standard provider, ``airflow.hooks`` and
  ``airflow.exceptions``;
- 2.11: there is no Task SDK; every name comes from its Airflow 2 module.

Only names, no behaviour: a difference in behaviour between versions is handled where it
matters, next to a test (see ``run_nested`` below).
"""

from __future__ import annotations

import contextvars
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

_MAJOR_MINOR = tuple(int(part) for part in AIRFLOW_VERSION.split(".")[:2])
AIRFLOW_3 = _MAJOR_MINOR >= (3, 0)
"""Airflow 3 (the Task SDK, the execution API, asset watchers from 3.0.1)."""
TASK_SDK_COMPLETE = _MAJOR_MINOR >= (3, 1)
"""Airflow 3.1 and later: every name the pipeline uses is in ``airflow.sdk``."""

if TASK_SDK_COMPLETE:
    from airflow.sdk import (
        DAG,
        BaseBranchOperator,
        BaseHook,
        BaseOperator,
        BaseOperatorLink,
        Param,
        TaskGroup,
        TriggerRule,
        Variable,
        XComArg,
    )
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.sdk.execution_time.xcom import XCom
elif AIRFLOW_3:
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred
    from airflow.hooks.base import BaseHook
    from airflow.providers.standard.operators.branch import BaseBranchOperator
    from airflow.sdk import DAG, BaseOperator, BaseOperatorLink, Param, TaskGroup, Variable, XComArg
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.utils.trigger_rule import TriggerRule
else:
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.models.baseoperatorlink import BaseOperatorLink
    from airflow.models.dag import DAG
    from airflow.models.param import Param
    from airflow.models.variable import Variable
    from airflow.models.xcom import XCom
    from airflow.models.xcom_arg import XComArg
    from airflow.operators.branch import BaseBranchOperator
    from airflow.utils.task_group import TaskGroup
    from airflow.utils.trigger_rule import TriggerRule

__all__ = [
    "AIRFLOW_3",
    "AIRFLOW_VERSION",
    "DAG",
    "TASK_SDK_COMPLETE",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "BaseBranchOperator",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "Param",
    "TaskDeferred",
    "TaskGroup",
    "TriggerRule",
    "Variable",
    "XCom",
    "XComArg",
    "run_nested",
]


def run_nested(operator: Any, method: str, *args: Any) -> Any:
    """``operator.<method>(*args)``, run as the task's own code, the way the task runner runs it.

    Airflow guards ``execute`` against being called from anywhere but the task runner. Airflow 3
    marks the operator it runs in a context variable (this does the same in a copy of the
    context); Airflow 2 passes a sentinel keyword argument that the guard takes off again.
    """
    if AIRFLOW_3:
        from airflow.sdk.bases.operator import ExecutorSafeguard

        context = contextvars.copy_context()
        context.run(ExecutorSafeguard.tracker.set, operator)
        return context.run(getattr(operator, method), *args)
    from airflow.models.baseoperator import _sentinel

    if method == "execute":
        return operator.execute(*args, **{f"{type(operator).__name__}__sentinel": _sentinel})
    return getattr(operator, method)(*args)
