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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from deeplens_pipeline import evaluation
from deeplens_pipeline import groundtruth as gt
from deeplens_pipeline import label_studio as ls
from deeplens_pipeline.airflow_compat import AirflowException, AirflowFailException
from deeplens_pipeline.hooks.groundtruth import GroundTruthHook
from deeplens_pipeline.layout import BucketLayout, run_segment, split_s3_uri
from deeplens_pipeline.naming import RunScope, job_name, labeling_job_name

Pending = Callable[[], list[str]]
TRANSFORM_RUNNING = ("InProgress", "Stopping")


@dataclass(frozen=True)
class Wait:
    """A wait a backend asks for: the trigger, the operator method that resumes, the deferral's timeout."""

    trigger: Any
    method: str = "execute_complete"
    timeout: timedelta | None = None


def prelabel_name(scope: RunScope) -> str:
    """The pre-labelling model's and transform job's name for this run (one paid job per run)."""
    return job_name("prelabel", scope)


def prelabel_prefix(run_id: str) -> str:
    """Where this run's pre-labelling keeps its transform input manifest and the predictions."""
    return f"prelabel/{run_segment(run_id)}/"


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
        """Begin (or re-attach to) this run's labelling: a trigger (resumed by ``execute_complete``),
        a :class:`Wait`, FINISHED, or None."""
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

    Pre-drawn boxes: when the registry has a current model (its newest Approved version), the new
    images first go through one batch transform job of this run (``deeplens-prelabel-…``, the
    evaluation's request; waited for in the triggerer, re-attached on a retry), and each task is
    imported with the boxes scoring at least the threshold as a Label Studio prediction
    (``model_version``: the registry version). After the wait, the annotations are compared with
    them: the result's ``prelabel`` says how many were kept unchanged, changed, deleted, and added.
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
        self.prelabel: dict[str, Any] | None = None

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
            "prelabel": self.prelabel,
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

    # --- pre-labels: the current model's boxes, from a batch transform job -----------------------

    def _sagemaker(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook  # boto3: at run time

        return SageMakerHook(aws_conn_id=self.op.aws_conn_id, region_name=self.config["region"])

    def threshold(self) -> float:
        """The least score of a pre-drawn box (the operator's, else ``params.detection_threshold``)."""
        value = self.op.prelabel_threshold
        return float(self.config["detection_threshold"] if value is None else value)

    def prelabel_model(self, hook: Any) -> Any:
        """The registry's current model to pre-label with, or None (the reason is logged and kept)."""
        from deeplens_pipeline.registry import current_model, group_name

        def skip(reason: str) -> None:
            self.log.info("No pre-drawn boxes: %s", reason)
            self.prelabel = {"skipped": reason}

        if not self.op.prelabel:
            return skip("pre-labelling is off for this task (prelabel=False)")
        group = group_name(self.scope.environment, self.scope.dag_id)
        model = current_model(hook.conn, group)
        if model is None:
            return skip(f"model package group {group} has no Approved version yet")
        if not model.classes:
            return skip(f"version {model.version} of {group} does not record its classes")
        shared = [name for name in model.classes if name in self.config["classes"]]
        if not shared:
            return skip(
                f"version {model.version} of {group} detects {model.classes}, none of params.classes "
                f"{self.config['classes']}"
            )
        if not model.model_artifact:
            return skip(f"version {model.version} of {group} has no model artefact")
        return model

    def _ensure_prelabel_model(self, hook: Any, name: str, model: Any) -> None:
        """The SageMaker model ``name`` over the current model's artefact (as the evaluation makes it)."""
        from deeplens_pipeline.hooks.groundtruth import describe_or_none
        from deeplens_pipeline.training import object_detection_image

        existing = describe_or_none(hook.describe_model, name)
        if existing is not None:
            found = existing.get("PrimaryContainer", {}).get("ModelDataUrl")
            if found != model.model_artifact:
                self.log.warning(
                    "Model %s (this run's pre-labeller) serves %s, not %s: a newer version was approved "
                    "since this run began; pre-labelling with the first",
                    name,
                    found,
                    model.model_artifact,
                )
            return
        image = model.image or object_detection_image(
            self.config["region"], self.config.get("training_image") or ""
        )
        self.log.info("Creating model %s from version %s (%s)", name, model.version, model.model_artifact)
        hook.create_model(
            {
                "ModelName": name,
                "ExecutionRoleArn": self.config["role_arn"],
                "PrimaryContainer": {"Image": image, "ModelDataUrl": model.model_artifact},
            }
        )

    def _transform_wait(self, name: str) -> Wait:
        from deeplens_pipeline.triggers.sagemaker import SageMakerJobTrigger

        poll = self.config["poll_seconds"]
        attempts = max(1, math.ceil((self.config["max_runtime_hours"] * 3600 + 3600) / poll))
        return Wait(
            trigger=SageMakerJobTrigger(
                job_name=name,
                job_type="Transform",
                waiter_delay=poll,
                waiter_max_attempts=attempts,
                aws_conn_id=self.op.aws_conn_id,
                region_name=self.config["region"],
            ),
            method="execute_after_prelabel",
            timeout=timedelta(seconds=poll * attempts),
        )

    def prelabel_job(self, new: list[str]) -> Wait | tuple[Any, dict[str, Any]] | None:
        """Start or re-attach to this run's transform job over ``new`` with the current model.

        A :class:`Wait` while it runs; (model, job description) once it completed; None when there
        is nothing to pre-label with or the job failed (the images are then imported without boxes:
        pre-drawn boxes save annotators time, their absence costs no label).
        """
        from deeplens_pipeline.hooks.groundtruth import describe_or_none
        from deeplens_pipeline.operators.evaluation import DEFAULT_INSTANCE_TYPE, transform_request

        hook = self._sagemaker()
        model = self.prelabel_model(hook)
        if model is None:
            return None
        name = prelabel_name(self.scope)
        job = describe_or_none(hook.describe_transform_job, name)
        if job is None:
            self._ensure_prelabel_model(hook, name, model)
            prefix = prelabel_prefix(self.scope.run_id)
            manifest_key = f"{prefix}input.manifest"
            bucket = self.config["bucket"]
            self.op.s3(self.config).load_string(
                evaluation.transform_manifest(new), manifest_key, bucket, replace=True
            )
            request = transform_request(
                name,
                f"s3://{bucket}/{manifest_key}",
                f"s3://{bucket}/{prefix}predictions/",
                self.op.prelabel_instance_type
                or self.config.get("evaluation_instance_type")
                or DEFAULT_INSTANCE_TYPE,
            )
            hook.create_transform_job(request, wait_for_completion=False)
            self.log.info(
                "Transform job %s: pre-drawing boxes on %d new image(s) with version %s of the model",
                name,
                len(new),
                model.version,
            )
            return self._transform_wait(name)
        status = job["TransformJobStatus"]
        if status in TRANSFORM_RUNNING:
            self.log.info("Transform job %s is %s: re-attaching, not starting another", name, status)
            return self._transform_wait(name)
        if status == "Completed":
            return model, job
        reason = f"transform job {name} is {status}: {job.get('FailureReason') or 'no reason given'}"
        self.log.warning("No pre-drawn boxes (%s): the images go to annotators without them", reason)
        self.prelabel = {"skipped": reason, "transform_job": name}
        return None

    def predictions(self, model: Any, job: dict[str, Any], new: list[str]) -> dict[str, dict[str, Any]]:
        """Each new image's Label Studio prediction from the transform's answers (boxes ≥ threshold)."""
        s3 = self.op.s3(self.config)
        output = job["TransformOutput"]["S3OutputPath"]
        threshold = self.threshold()
        found: dict[str, dict[str, Any]] = {}
        counts = {"boxes": 0, "below_threshold": 0, "other_classes": 0, "no_prediction": 0}
        for image in new:
            uri = evaluation.prediction_uri(image, output)
            bucket, key = split_s3_uri(uri)
            if not s3.check_for_key(key, bucket):
                counts["no_prediction"] += 1  # an image that arrived after the job started
                continue
            try:
                detections = evaluation.parse_prediction(s3.read_key(key, bucket), len(model.classes), uri)
            except evaluation.EvaluationError as err:
                self.log.warning("No pre-drawn boxes on %s: %s", image, err)
                counts["no_prediction"] += 1
                continue
            width, height, _ = image_size(s3, image)
            pre = ls.prediction_results(
                detections, model.classes, self.config["classes"], (width, height), threshold
            )
            counts["boxes"] += len(pre.result)
            counts["below_threshold"] += pre.below_threshold
            counts["other_classes"] += pre.unmapped
            found[image] = pre.prediction(str(model.version))
        self.prelabel = {
            "model_version": str(model.version),
            "model_package": model.arn,
            "transform_job": job["TransformJobName"],
            "threshold": threshold,
            "tasks": len(found),
            **counts,
        }
        self.log.info("Pre-drawn boxes: %s", self.prelabel)
        return found

    def _show_version(self, project: Any, version: str) -> None:
        """Make ``version`` the project's model version: Label Studio shows annotators only the
        predictions of the project's ``model_version`` (it takes the first one imported and keeps it)."""
        current = self.client().projects.get(id=project.id).model_version
        if current != version:
            self.client().projects.update(id=project.id, model_version=version)
            self.log.info(
                "Label Studio project %r now shows the predictions of model version %s (was %r)",
                self.title,
                version,
                current,
            )

    # --- the interface --------------------------------------------------------------------------

    def start(self, pending: Pending) -> Any:
        todo = pending()
        if not todo:
            return None
        project = self.project()  # after the images are listed: a storage's prefix must hold an object
        self._ensure_cors(self.config["bucket"])
        existing = self.tasks(annotations=False)
        new = [image for image in todo if image not in existing]
        if new:
            # Pre-drawn boxes first: tasks are imported once, with their predictions.
            outcome = self.prelabel_job(new)
            if isinstance(outcome, Wait):
                return outcome
            predicted = self.predictions(*outcome, new) if outcome is not None else {}
            request = [
                {
                    "data": ls.task_data(image, self.work_name),
                    **({"predictions": [predicted[image]]} if image in predicted else {}),
                }
                for image in new
            ]
            self.client().projects.import_tasks(id=self.project_id, request=request)
            if predicted:  # Label Studio takes a model version only once it has its predictions
                self._show_version(project, str(outcome[0].version))
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
        review = ls.PrelabelDiff()
        versions: set[str] = set()
        for image in todo:
            task = tasks.get(image)
            if task is None:
                result.unanswered.append(image)
                continue
            ls.convert_task(task, image_size(s3, image), self.config["classes"], result)
            diff = ls.task_prelabel_diff(task)
            if diff is not None:
                review.add(diff)
                versions.add(str((ls.newest_prediction(task["predictions"]) or {}).get("model_version")))
        if review.tasks:
            self.prelabel = {
                "model_versions": sorted(versions),
                **review.report(),
                # This run's pre-label job, for the run's cost (absent when no image was new this run).
                "transform_job": prelabel_name(self.scope),
            }
            self.log.info("What annotators did with the pre-drawn boxes: %s", self.prelabel)
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
