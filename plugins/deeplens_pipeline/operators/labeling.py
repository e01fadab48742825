"""Ground Truth labelling of the images that have no label yet, waiting in the triggerer."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowException

from deeplens_pipeline import groundtruth as gt
from deeplens_pipeline.hooks.groundtruth import GroundTruthHook
from deeplens_pipeline.layout import BucketLayout, split_s3_uri
from deeplens_pipeline.naming import labeling_job_name
from deeplens_pipeline.operators.base import PipelineOperator, run_config, run_scope

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_labels(s3: S3Hook, layout: BucketLayout, key: str, config: dict[str, Any]) -> list[gt.LabelledImage]:
    """The labels in the manifest at ``key`` (empty when it does not exist yet)."""
    if not s3.check_for_key(key, layout.bucket):
        return []
    text = s3.read_key(key, layout.bucket)
    return list(
        gt.parse_manifest(
            text.splitlines(), config["label_attribute"], config["classes"], source=layout.uri(key)
        )
    )


def write_labels(
    s3: S3Hook, layout: BucketLayout, labels: list[gt.LabelledImage], config: dict[str, Any], tag: str
) -> None:
    """Replace the labels manifest, keeping a copy of the previous one (taken once per ``tag``)."""
    backup = layout.labels_backup_key(tag)
    if s3.check_for_key(layout.labels_key, layout.bucket) and not s3.check_for_key(backup, layout.bucket):
        s3.copy_object(layout.labels_key, backup, layout.bucket, layout.bucket)
    body = "".join(image.to_line(config["label_attribute"], config["classes"]) + "\n" for image in labels)
    s3.load_string(body, layout.labels_key, layout.bucket, replace=True)


class GroundTruthLabelingOperator(PipelineOperator):
    """Create (or re-attach to) this run's bounding-box labelling job, wait, merge its labels.

    Only images under the input prefix that have no label yet go to the workers. The job's name
    comes from the run id, so a retried task finds its job instead of paying for a second one.
    Waiting happens in the triggerer: no worker slot is held while people label.
    Returns the job name (None when nothing needed labels), this job's counts and the totals.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        layout = self.layout(config)
        s3 = self.s3(config)
        hook = GroundTruthHook(aws_conn_id=self.aws_conn_id, region_name=config["region"])
        name = labeling_job_name(run_scope(context))
        job = hook.describe_labeling_job(name)
        if job is None:
            labels = self._merge_prelabelled(s3, layout, config, name)
            labelled = {image.source_ref for image in labels}
            keys = s3.list_keys(bucket_name=layout.bucket, prefix=layout.input_prefix) or []
            todo = sorted(
                layout.uri(k)
                for k in keys
                if k.lower().endswith(IMAGE_SUFFIXES) and layout.uri(k) not in labelled
            )
            self.log.info(
                "%d image(s) under %s, %d already labelled, %d to label",
                len(keys),
                layout.uri(layout.input_prefix),
                len(labelled),
                len(todo),
            )
            if not todo:
                return self._result(config, s3, layout, None, None)
            self._create_job(hook, s3, layout, config, name, todo)
        elif job["LabelingJobStatus"] == "Completed":
            self.log.info("Labelling job %s already completed: re-attaching", name)
            return self._finish(config, hook, name)
        elif job["LabelingJobStatus"] in gt.TERMINAL_BAD:
            raise AirflowException(
                f"Labelling job {name} is {job['LabelingJobStatus']}: "
                f"{job.get('FailureReason', 'no reason')}."
                " Trigger a new DAG run to label again."
            )
        else:
            self.log.info("Labelling job %s is %s: re-attaching", name, job["LabelingJobStatus"])
        poll = config["poll_seconds"]
        timeout = timedelta(days=config["labeling_timeout_days"])
        self.defer(
            trigger=gt_trigger(name, poll, timeout, self.aws_conn_id, config["region"]),
            method_name="execute_complete",
            timeout=timeout,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        config = run_config(context)
        hook = GroundTruthHook(aws_conn_id=self.aws_conn_id, region_name=config["region"])
        name = labeling_job_name(run_scope(context))
        if not event or event.get("status") != "success":
            job = hook.describe_labeling_job(name) or {}
            raise AirflowException(
                f"Labelling job {name} ended {job.get('LabelingJobStatus', 'unknown')}: "
                f"{job.get('FailureReason') or (event or {}).get('message', 'no reason given')}"
            )
        return self._finish(config, hook, name)

    def _merge_prelabelled(
        self, s3: S3Hook, layout: BucketLayout, config: dict[str, Any], tag: str
    ) -> list[gt.LabelledImage]:
        labels = read_labels(s3, layout, layout.labels_key, config)
        known = {image.source_ref for image in labels}
        pre = [
            i for i in read_labels(s3, layout, layout.prelabelled_key, config) if i.source_ref not in known
        ]
        if pre:
            self.log.info("Adding %d image(s) that came with boxes to the labels", len(pre))
            labels = gt.merge_labels(labels, pre)
            write_labels(s3, layout, labels, config, f"{tag}-prelabelled")
        return labels

    def _ensure_cors(self, s3: S3Hook, bucket: str) -> None:
        """Give the images' bucket the CORS rule Ground Truth's workers need (kept if present)."""
        client = s3.get_conn()
        try:
            rules = client.get_bucket_cors(Bucket=bucket)["CORSRules"]
        except client.exceptions.ClientError as err:
            if err.response["Error"]["Code"] != "NoSuchCORSConfiguration":
                raise
            rules = []
        wanted = gt.cors_with_labeling_rule(rules)
        if wanted is None:
            self.log.info("Bucket %s already lets the workers' browsers read its images (CORS)", bucket)
            return
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": wanted})
        self.log.info(
            "Added the CORS rule Ground Truth needs to bucket %s (kept its %d existing rule(s))",
            bucket,
            len(rules),
        )

    def _create_job(
        self,
        hook: GroundTruthHook,
        s3: S3Hook,
        layout: BucketLayout,
        config: dict[str, Any],
        name: str,
        todo: list[str],
    ) -> None:
        self._ensure_cors(s3, layout.bucket)
        manifest_key = layout.labeling_input_key(name)
        s3.load_string(gt.input_manifest(todo), manifest_key, layout.bucket, replace=True)
        s3.load_string(
            gt.label_category_config(config["classes"]), layout.label_config_key, layout.bucket, replace=True
        )
        # The Liquid template is uploaded from Python, never rendered by Jinja.
        s3.load_string(gt.BOUNDING_BOX_TEMPLATE, layout.ui_template_key, layout.bucket, replace=True)
        request = gt.create_labeling_job_request(
            job_name=name,
            label_attribute=config["label_attribute"],
            input_manifest_uri=layout.uri(manifest_key),
            output_uri=layout.output_uri,
            role_arn=config["role_arn"],
            workteam_arn=config["workteam_arn"],
            label_config_uri=layout.uri(layout.label_config_key),
            ui_template_uri=layout.uri(layout.ui_template_key),
            region=config["region"],
            task_title=config["task_title"],
            task_description=config["task_description"],
            workers_per_image=config["workers_per_image"],
            task_time_limit_seconds=config["task_time_limit_seconds"],
            task_availability_seconds=gt.task_availability_seconds(config["labeling_timeout_days"]),
            tags={"deeplens:pipeline": "object-detection"},
        )
        arn = hook.conn.create_labeling_job(**request)["LabelingJobArn"]
        self.log.info("Created labelling job %s (%s) for %d image(s)", name, arn, len(todo))

    def _finish(self, config: dict[str, Any], hook: GroundTruthHook, name: str) -> dict[str, Any]:
        job = hook.describe_labeling_job(name) or {}
        output_uri = job.get("LabelingJobOutput", {}).get("OutputDatasetS3Uri") or gt.output_manifest_uri(
            BucketLayout(config["bucket"]).output_uri, name
        )
        bucket, key = split_s3_uri(output_uri)
        s3 = self.s3(config)
        layout = self.layout(config)
        new = list(
            gt.parse_manifest(
                s3.read_key(key, bucket).splitlines(),
                config["label_attribute"],
                config["classes"],
                source=output_uri,
            )
        )
        labels = gt.merge_labels(read_labels(s3, layout, layout.labels_key, config), new)
        write_labels(s3, layout, labels, config, name)
        job_summary = gt.summarise(new, config["classes"]).as_dict()
        self.log.info("Labelling job %s: %s", name, job_summary)
        return self._result(config, s3, layout, name, job_summary, labels)

    def _result(
        self,
        config: dict[str, Any],
        s3: S3Hook,
        layout: BucketLayout,
        name: str | None,
        job_summary: dict[str, Any] | None,
        labels: list[gt.LabelledImage] | None = None,
    ) -> dict[str, Any]:
        if labels is None:
            labels = read_labels(s3, layout, layout.labels_key, config)
        total = gt.summarise(labels, config["classes"]).as_dict()
        self.log.info("All labels: %s", total)
        return {
            "job_name": name,
            "job": job_summary,
            "labels_manifest": layout.uri(layout.labels_key),
            "total": total,
        }


def gt_trigger(name: str, poll: int, timeout: timedelta, conn_id: str, region: str) -> Any:
    """The labelling job's trigger: poll every ``poll`` seconds until ``timeout``."""
    from deeplens_pipeline.triggers.groundtruth import LabelingJobTrigger

    attempts = max(1, math.ceil(timeout.total_seconds() / poll))
    return LabelingJobTrigger(
        job_name=name,
        waiter_delay=poll,
        waiter_max_attempts=attempts,
        aws_conn_id=conn_id,
        region_name=region,
    )
