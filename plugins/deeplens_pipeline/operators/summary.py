"""The run's summary: what each stage did, in one place (logged, stored in S3 and returned)."""

from __future__ import annotations

import json
from typing import Any

from deeplens_pipeline import cost
from deeplens_pipeline.operators.base import PipelineOperator, run_config
from deeplens_pipeline.summary import build_summary, format_summary

S3_REQUESTS_PER_IMAGE = 4
"""What one new image costs in S3 requests, as estimated: its upload, the labelling task's read,
the training job's read and the holdout evaluation's read (manifests and reports are a few more)."""


class RunSummaryOperator(PipelineOperator):
    """Collect the stages' results into one summary; log it as a table, write it to
    ``s3://<bucket>/reports/<run id>/summary.json`` (beside the rejects report) and return it.

    The summary also prices the run by the public price list (:mod:`deeplens_pipeline.cost`): the
    training jobs' billable time and the batch transform jobs' (evaluations, pre-labels), read
    back from SageMaker, plus the S3 requests the new images cost."""

    template_fields = ("results",)

    def __init__(self, *, results: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        summary = build_summary(self.results)
        estimate = self._cost(config)
        if estimate is not None:
            summary["cost_usd"] = estimate["total"]
        for line in format_summary(summary).splitlines():
            self.log.info("%s", line)
        if estimate is not None:
            self.log.info("What this run costs on AWS (%s):", estimate["prices_as_of"])
            for line in cost.format_cost(estimate).splitlines():
                self.log.info("  %s", line)
        layout = self.layout(config)
        key = layout.report_key(context["run_id"], "summary.json")
        document = {"run_id": context["run_id"], **summary, "cost": estimate}
        self.s3(config).load_string(
            json.dumps(document, indent=2, default=str), key, layout.bucket, replace=True
        )
        self.log.info("Summary written to %s", layout.uri(key))
        return summary

    def _jobs(self) -> tuple[list[str], str | None, list[str]]:
        """This run's training job, tuning job and batch transform jobs, as the stages reported them."""
        model = self.results.get("model") or {}
        transforms = [
            (self.results.get(stage) or {}).get("transform_job")
            for stage in ("evaluation_candidate", "evaluation_current")
        ]
        prelabel = (self.results.get("labeling") or {}).get("prelabel") or {}
        transforms.append(prelabel.get("transform_job"))
        training = [model["training_job"]] if model.get("training_job") else []
        return training, model.get("tuning_job"), [name for name in transforms if name]

    def _cost(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The run's price, or None when nothing was paid for (e.g. too few new photos)."""
        training, tuning, transforms = self._jobs()
        if not (training or tuning or transforms):
            return None
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        client = SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=config["region"]).conn
        images = self.results.get("images") or {}
        labeling = self.results.get("labeling") or {}
        new_images = int(images.get("processed") or 0)
        try:
            if tuning:  # every training job of the tuning job is billed; SageMaker names them after it
                pages = client.get_paginator("list_training_jobs").paginate(NameContains=tuning)
                training = [
                    job["TrainingJobName"]
                    for page in pages
                    for job in page["TrainingJobSummaries"]
                    if job["TrainingJobName"].startswith(f"{tuning}-")
                ] or training
            return cost.estimate_run_cost(
                training_jobs=[
                    cost.training_usage(client.describe_training_job(TrainingJobName=name))
                    for name in training
                ],
                transform_jobs=[cost.transform_usage(job) for job in self._transforms(client, transforms)],
                s3_put_requests=new_images,
                s3_get_requests=new_images * (S3_REQUESTS_PER_IMAGE - 1),
                ground_truth_objects=int((labeling.get("job") or {}).get("images") or 0)
                if labeling.get("backend") == "ground-truth"
                else 0,
                region=config["region"],
            )
        except (cost.CostError, client.exceptions.ClientError) as error:
            # A price is information, not the run's outcome: never fail the summary for it.
            self.log.warning("No cost estimate for this run: %s", error)
            return None

    def _transforms(self, client: Any, names: list[str]) -> list[dict[str, Any]]:
        """DescribeTransformJob of each job that exists (a pre-label job runs only for new images)."""
        found = []
        for name in names:
            try:
                found.append(client.describe_transform_job(TransformJobName=name))
            except client.exceptions.ClientError as error:
                if "Could not find" not in str(error):
                    raise
                self.log.info("No transform job %s in this run: nothing to price", name)
        return found
