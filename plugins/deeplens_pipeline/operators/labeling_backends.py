"""The labelling backends behind ``LabelImagesOperator``: Ground Truth, Label Studio, none.

One small interface (:class:`LabelingBackend`): ``start`` begins or re-attaches to the run's work
and returns a trigger to wait on, :data:`FINISHED`, or None (nothing to label); ``collect`` returns
the new labels once the wait is over. What was left out, and why, goes to ``left_out``.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from deeplens_pipeline import groundtruth as gt
from deeplens_pipeline import label_studio as ls
from deeplens_pipeline.airflow_compat import AirflowException, AirflowFailException
from deeplens_pipeline.hooks.groundtruth import GroundTruthHook
from deeplens_pipeline.layout import BucketLayout, split_s3_uri
from deeplens_pipeline.naming import RunScope, labeling_job_name

Pending = Callable[[], list[str]]


class LabelingBackend:
    """What every backend shares: the operator (hooks, log), the checked config, the run's name."""

    name: ClassVar[str]
    FINISHED: ClassVar[str] = "finished"

    def __init__(self, operator: Any, config: dict[str, Any], scope: RunScope) -> None:
        self.op = operator
        self.log = operator.log
        self.config = config
        self.scope = scope
        self.layout = BucketLayout(bucket=config["bucket"], input_prefix=config["input_prefix"])
        self.work_name = labeling_job_name(scope)
        self.left_out: dict[str, list[str]] = {}

    def start(self, pending: Pending) -> Any:
        """Begin (or re-attach to) this run's labelling; a trigger, FINISHED, or None."""
        raise NotImplementedError

    def collect(self, event: dict[str, Any] | None) -> list[gt.LabelledImage]:
        """The labels this run's work produced (called after the wait, or at once when FINISHED)."""
        raise NotImplementedError

    def defer_timeout(self) -> timedelta | None:
        """The deferral's timeout (None: the trigger ends the wait itself)."""
        return None

    def extra_result(self) -> dict[str, Any]:
        """Backend-specific fields of the task's result (e.g. the Label Studio project)."""
        return {}

    def _ensure_cors(self, bucket: str) -> None:
        """Give the images' bucket the CORS rule labellers' browsers need (the bucket's rules kept).

        Ground Truth's worker UI and Label Studio's both load the images cross-origin (Label Studio's
        through a redirect to a presigned URL, fetched with its own origin or, after a cross-origin
        redirect, ``null``), so the rule is AWS's documented one for Ground Truth: GET from any origin.
        """
        client = self.op.s3(self.config).get_conn()
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
            "Added the CORS rule labellers' browsers need to bucket %s (kept its %d existing rule(s))",
            bucket,
            len(rules),
        )

    def leave_out(self, reason: str, images: list[str]) -> None:
        """Record images left out of the labels, and say so in the log."""
        if images:
            self.left_out.setdefault(reason, []).extend(images)
            self.log.warning(
                "%d image(s) left out (%s): %s%s",
                len(images),
                reason,
                ", ".join(images[:5]),
                " …" if len(images) > 5 else "",
            )


class NoLabelingBackend(LabelingBackend):
    """Labels come only from ``labels_manifest`` / VOC files: the rest is reported and left out."""

    name = "none"

    def start(self, pending: Pending) -> None:
        self.leave_out("no boxes and labeling_backend is 'none'", pending())
        return None


class GroundTruthBackend(LabelingBackend):
    """A SageMaker Ground Truth bounding-box job named after the run (for accounts that have it)."""

    name = "ground-truth"

    def __init__(self, operator: Any, config: dict[str, Any], scope: RunScope) -> None:
        super().__init__(operator, config, scope)
        self.hook = GroundTruthHook(aws_conn_id=operator.aws_conn_id, region_name=config["region"])

    def defer_timeout(self) -> timedelta:
        return timedelta(days=self.config["labeling_timeout_days"])

    def start(self, pending: Pending) -> Any:
        name = self.work_name
        job = self.hook.describe_labeling_job(name)
        if job is None:
            todo = pending()
            if not todo:
                return None
            self._create_job(todo)
        elif job["LabelingJobStatus"] == "Completed":
            self.log.info("Labelling job %s already completed: re-attaching", name)
            return self.FINISHED
        elif job["LabelingJobStatus"] in gt.TERMINAL_BAD:
            raise AirflowException(
                f"Labelling job {name} is {job['LabelingJobStatus']}: "
                f"{job.get('FailureReason', 'no reason')}. Trigger a new DAG run to label again."
            )
        else:
            self.log.info("Labelling job %s is %s: re-attaching", name, job["LabelingJobStatus"])
        return gt_trigger(
            name,
            self.config["poll_seconds"],
            self.defer_timeout(),
            self.op.aws_conn_id,
            self.config["region"],
        )

    def collect(self, event: dict[str, Any] | None) -> list[gt.LabelledImage]:
        name = self.work_name
        job = self.hook.describe_labeling_job(name) or {}
        if event is not None and event.get("status") != "success":
            raise AirflowException(
                f"Labelling job {name} ended {job.get('LabelingJobStatus', 'unknown')}: "
                f"{job.get('FailureReason') or event.get('message', 'no reason given')}"
            )
        output_uri = job.get("LabelingJobOutput", {}).get("OutputDatasetS3Uri") or gt.output_manifest_uri(
            self.layout.output_uri, name
        )
        bucket, key = split_s3_uri(output_uri)
        text = self.op.s3(self.config).read_key(key, bucket)
        return list(
            gt.parse_manifest(
                text.splitlines(), self.config["label_attribute"], self.config["classes"], source=output_uri
            )
        )

    def _create_job(self, todo: list[str]) -> None:
        config, layout, name = self.config, self.layout, self.work_name
        s3 = self.op.s3(config)
        self._ensure_cors(layout.bucket)
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
        arn = self.hook.conn.create_labeling_job(**request)["LabelingJobArn"]
        self.log.info("Created labelling job %s (%s) for %d image(s)", name, arn, len(todo))


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


class LabelStudioBackend(LabelingBackend):
    """The team's Label Studio: one project per environment, DAG and image folder; tasks per image.

    Tasks carry the image's s3:// URI, which the project's S3 storage presigns for the annotator's
    browser. Only images that have no label and no task yet are imported; the run waits for every
    task of its unlabelled images, then converts the newest completed annotation of each into
    Ground Truth's manifest lines (written under ``output/<work name>/``, as a job's would be).
    """

    name = "label-studio"

    def __init__(self, operator: Any, config: dict[str, Any], scope: RunScope) -> None:
        super().__init__(operator, config, scope)
        self.title = ls.project_title(
            scope.environment, scope.dag_id, config["bucket"], config["input_prefix"]
        )
        self._client: Any = None
        self._server: Any = None
        self.project_id: int | None = None

    # --- the server -----------------------------------------------------------------------------

    def server(self) -> Any:
        from deeplens_pipeline.hooks.label_studio import LabelStudioAuthError, server_from_connection

        if self._server is None:
            try:
                self._server = server_from_connection(self.op.label_studio_conn_id)
            except LabelStudioAuthError as err:
                raise AirflowFailException(str(err)) from None
        return self._server

    def client(self) -> Any:
        from deeplens_pipeline.hooks.label_studio import LabelStudioAuthError, sdk_client

        if self._client is None:
            try:
                self._client = sdk_client(self.server())
            except LabelStudioAuthError as err:
                raise AirflowFailException(str(err)) from None
        return self._client

    def extra_result(self) -> dict[str, Any]:
        url = f"{self.server().url}/projects/{self.project_id}" if self.project_id else None
        conversion = getattr(self, "conversion", None)
        return {
            "project": self.title,
            "project_url": url,
            "export": conversion.report() if conversion is not None else None,
        }

    # --- the project ----------------------------------------------------------------------------

    def project(self) -> Any:
        """Find the project by its title, or create it; its interface gets any class added since."""
        client, classes = self.client(), self.config["classes"]
        found = sorted(
            (p for p in client.projects.list(title=self.title) if p.title == self.title), key=lambda p: p.id
        )
        if found:
            project = client.projects.get(id=found[0].id)
            try:
                grow = ls.reconcile_classes(ls.config_labels(project.label_config or ""), classes, self.title)
            except ls.LabelStudioError as err:
                raise AirflowFailException(str(err)) from None
            if grow:
                client.projects.update(id=project.id, label_config=ls.label_config(classes))
                self.log.info("Label Studio project %r: interface now labels %s", self.title, classes)
        else:
            project = client.projects.create(
                title=self.title,
                description=(
                    f"Boxes for the DeepLens detector: images in s3://{self.config['bucket']}/"
                    f"{self.config['input_prefix']} (DAG {self.scope.dag_id}, environment "
                    f"{self.scope.environment}). Made by the pipeline; do not rename it."
                ),
                label_config=ls.label_config(classes),
                expert_instruction=f"<p>{self.config['task_description']}</p>",
                show_instruction=True,
                show_skip_button=True,
            )
            self.log.info("Created Label Studio project %r (id %s)", self.title, project.id)
        self.project_id = project.id
        self._ensure_storage(project.id)
        return project

    def _ensure_storage(self, project_id: int) -> None:
        """The project's S3 storage over the bucket, which presigns the tasks' s3:// URIs."""
        client, bucket = self.client(), self.config["bucket"]
        existing = [s for s in client.import_storage.s3.list(project=project_id) if s.bucket == bucket]
        if existing:
            return
        extra = self.server().storage
        settings: dict[str, Any] = {
            "project": project_id,
            "title": f"s3://{bucket}/{self.config['input_prefix']}",
            "bucket": bucket,
            "prefix": self.config["input_prefix"],
            "regex_filter": r".*\.(jpe?g|png)$",
            "use_blob_urls": True,
            "presign": True,
            "presign_ttl": int(extra.get("presign_ttl", 60)),
            "region_name": extra.get("region_name") or self.config["region"],
        }
        for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            if extra.get(key):
                settings[key] = extra[key]
        if extra.get("s3_endpoint"):
            settings["s3endpoint"] = extra["s3_endpoint"]
        client.import_storage.s3.create(**settings)
        self.log.info("Connected Label Studio project %s to s3://%s (presigned URLs)", project_id, bucket)

    def tasks(self, *, annotations: bool) -> dict[str, dict[str, Any]]:
        """The project's tasks by image URI (with their annotations when ``annotations``)."""
        fields = "all" if annotations else "task_only"
        by_image: dict[str, dict[str, Any]] = {}
        tasks = self.client().tasks.list(
            project=self.project_id, fields=fields, page_size=500, resolve_uri=False
        )
        for task in tasks:
            record = task.model_dump() if hasattr(task, "model_dump") else dict(task)
            image = ls.task_image(record)
            if image is not None and (image not in by_image or record["id"] < by_image[image]["id"]):
                by_image[image] = record
        return by_image

    # --- the interface --------------------------------------------------------------------------

    def start(self, pending: Pending) -> Any:
        todo = pending()
        if not todo:
            return None
        self.project()  # after the images are listed: a storage's prefix must hold an object
        self._ensure_cors(self.config["bucket"])
        existing = self.tasks(annotations=False)
        new = [image for image in todo if image not in existing]
        if new:
            self.client().projects.import_tasks(
                id=self.project_id, request=[ls.task_data(image, self.work_name) for image in new]
            )
            existing = self.tasks(annotations=False)
        self.log.info(
            "Label Studio project %r: %d new task(s) imported, %d already there; labelling at %s/projects/%s",
            self.title,
            len(new),
            len(todo) - len(new),
            self.server().url,
            self.project_id,
        )
        waiting = [existing[image]["id"] for image in todo if image in existing]
        if all(ls.is_answered(existing[image]) for image in todo if image in existing):
            return self.FINISHED
        from deeplens_pipeline.triggers.label_studio import LabelStudioTasksTrigger

        return LabelStudioTasksTrigger(
            conn_id=self.op.label_studio_conn_id,
            project_id=self.project_id,
            task_ids=waiting,
            poll_seconds=self.config["poll_seconds"],
            deadline=time.time() + self.config["labeling_timeout_days"] * 86400,
        )

    def collect(self, event: dict[str, Any] | None) -> list[gt.LabelledImage]:
        if event is not None and event.get("status") == "error":
            raise AirflowFailException(event.get("message", "Label Studio refused the connection"))
        if event is not None and event.get("status") == "timeout":
            self.log.warning(
                "labeling_timeout_days passed with %s of %s task(s) answered: taking what is labelled",
                event.get("answered"),
                event.get("tasks"),
            )
        self.project()
        s3 = self.op.s3(self.config)
        todo = self.op._pending(s3, self.layout, self.config, self.name)
        tasks = self.tasks(annotations=True)
        result = ls.Conversion()
        for image in todo:
            task = tasks.get(image)
            if task is None:
                result.unanswered.append(image)
                continue
            ls.convert_task(task, image_size(s3, image), self.config["classes"], result)
        self.leave_out("skipped in Label Studio", result.skipped)
        self.leave_out("not annotated in time", result.unanswered)
        self.log.info("Label Studio export: %s", result.report())
        manifest = ls.output_manifest(
            result.images,
            self.config["label_attribute"],
            self.config["classes"],
            self.work_name,
            datetime.now(UTC),
        )
        key = gt.output_manifest_uri(self.layout.output_uri, self.work_name)
        s3.load_string(manifest, split_s3_uri(key)[1], self.layout.bucket, replace=True)
        self.log.info("Wrote the labels in Ground Truth's manifest form to %s", key)
        self.conversion = result
        return list(
            gt.parse_manifest(
                manifest.splitlines(), self.config["label_attribute"], self.config["classes"], source=key
            )
        )


def image_size(s3: Any, uri: str) -> tuple[int, int, int]:
    """(width, height, depth) of the image at ``uri``, read from its header (the first 256 KB)."""
    from PIL import Image

    bucket, key = split_s3_uri(uri)
    client = s3.get_conn()
    head = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-262143")["Body"].read()
    try:
        with Image.open(io.BytesIO(head)) as image:
            return image.width, image.height, len(image.getbands())
    except OSError:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(body)) as image:
            return image.width, image.height, len(image.getbands())


BACKENDS: dict[str, type[LabelingBackend]] = {
    backend.name: backend for backend in (LabelStudioBackend, GroundTruthBackend, NoLabelingBackend)
}
