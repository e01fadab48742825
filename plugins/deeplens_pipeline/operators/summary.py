"""The run's summary: what each stage did, in one place (logged and returned)."""

from __future__ import annotations

from typing import Any

from deeplens_pipeline.operators.base import PipelineOperator
from deeplens_pipeline.summary import build_summary, format_summary


class RunSummaryOperator(PipelineOperator):
    """Collect the stages' results into one summary; log it as a table and return it."""

    template_fields = ("results",)

    def __init__(self, *, results: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context: Any) -> dict[str, Any]:
        summary = build_summary(self.results)
        for line in format_summary(summary).splitlines():
            self.log.info("%s", line)
        return summary
