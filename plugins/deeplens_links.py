"""The pipeline's Airflow plugin: registers its operator extra links (the "Evaluation report" button).

Airflow 2 builds a task's links in the webserver and builds only link classes that a plugin
registered; Airflow 3 stores each link in XCom when the task ends and needs no registration, but
registering does no harm there. This file sits at the top of the plugins folder (the package
``deeplens_pipeline`` beside it is kept from the plugin manager by ``.airflowignore``), in the MWAA
bundle's ``plugins.zip`` too.
"""

from __future__ import annotations

# The plugin base class is at this path on every supported Airflow (2.11, 3.0, 3.3).
from airflow.plugins_manager import AirflowPlugin

from deeplens_pipeline.operators.report import EvaluationReportLink


class DeepLensPipelinePlugin(AirflowPlugin):
    """Registers ``EvaluationReportLink``."""

    name = "deeplens_pipeline"
    operator_extra_links = [EvaluationReportLink()]
