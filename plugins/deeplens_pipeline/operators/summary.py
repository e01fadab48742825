"""The run's summary: what each stage did, in one place (logged, stored in S3 and returned)."""

from __future__ import annotations

import json
from typing import Any

from deeplens_pipeline.operators.base import PipelineOperator, run_config
from deeplens_pipeline.summary import build_summary, format_summary


class RunSummaryOperator(PipelineOperator):
    """Collect the stages' results into one summary; log it as a table, write it to
    ``s3://<bucket>/reports/<run id>/summary.json`` (beside the rejects report) and return it."""

    template_fields = ("results",)

    def __init__(self, *, results: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        summary = build_summary(self.results)
        for line in format_summary(summary).splitlines():
            self.log.info("%s", line)
        layout = self.layout(config)
        key = layout.report_key(context["run_id"], "summary.json")
        body = json.dumps({"run_id": context["run_id"], **summary}, indent=2, default=str)
        self.s3(config).load_string(body, key, layout.bucket, replace=True)
        self.log.info("Summary written to %s", layout.uri(key))
        return summary
