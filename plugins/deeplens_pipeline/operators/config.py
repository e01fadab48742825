"""The run's first task: check every parameter before any AWS call."""

from __future__ import annotations

from typing import Any

from deeplens_pipeline.airflow_compat import AirflowFailException
from deeplens_pipeline.naming import labeling_job_name, training_job_name, tuning_job_name
from deeplens_pipeline.operators.base import PipelineOperator, run_config, run_scope
from deeplens_pipeline.params import ParamError, param_warnings


class CheckParamsOperator(PipelineOperator):
    """Validate the run's Params (schema and cross-field rules); fail at once, naming the parameter.

    A bad value is not retried: retrying cannot fix it. Returns the checked values and the job
    names this run will use, so the log shows both before anything is created.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            config = run_config(context)
        except ParamError as err:
            raise AirflowFailException(str(err)) from None
        warnings = param_warnings(config)
        for warning in warnings:
            self.log.warning("%s", warning)
        scope = run_scope(context, create_environment=True)
        names = {
            "labeling_job": labeling_job_name(scope),
            "training_job": training_job_name(scope),
            "tuning_job": tuning_job_name(scope),
        }
        self.log.info(
            "Parameters are valid. Job names for run %s of %s in environment %s: %s",
            scope.run_id,
            scope.dag_id,
            scope.environment,
            names,
        )
        return {"params": config, "job_names": names, "warnings": warnings}
