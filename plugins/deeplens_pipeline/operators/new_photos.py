"""The branch after the images stage: enough new photos to go on, or end the run green."""

from __future__ import annotations

from typing import Any

from deeplens_pipeline.airflow_compat import BaseBranchOperator, BaseOperator
from deeplens_pipeline.new_photos import decide, label_refs, read_marks, waiting_photos
from deeplens_pipeline.operators.base import ParamsSerializedOnce, PipelineOperator, read_or_empty, run_config


class EnoughNewPhotosOperator(PipelineOperator, BaseBranchOperator):
    """Follow ``go_on_task_id`` when at least ``params.min_new_photos`` new photos are not yet
    labelled (or the run was started by hand), else ``stop_task_id`` (:class:`KeepCurrentModelOperator`).

    New photos: the images stage's usable images that no run has had labelled
    (``manifests/sent-for-labelling.list``) and that have no label on today's pixels in
    ``manifests/labels.manifest``: this run's and those prepared by earlier runs that stopped here.
    The decision (``go_on``, ``new_photos``, ``prepared_by_this_run``, ``min_new_photos``,
    ``reason``) is logged and pushed as the XCom ``decision`` for the summary.
    """

    template_fields = ("images",)

    def __init__(self, *, images: Any, go_on_task_id: str, stop_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.go_on_task_id = go_on_task_id
        self.stop_task_id = stop_task_id

    def choose_branch(self, context: Any) -> str:
        config = run_config(context)
        images = self.images or {}
        dag_run = context.get("dag_run")
        run_type = str(getattr(dag_run, "run_type", "") or "manual")
        layout, s3 = self.layout(config), self.s3(config)
        labels = label_refs(read_or_empty(s3, layout.bucket, layout.labels_key).splitlines())
        sent = read_marks(read_or_empty(s3, layout.bucket, layout.sent_for_labelling_key))
        waiting = waiting_photos(images.get("images") or [], labels, layout.uri, sent)
        decision = decide(waiting, int(config["min_new_photos"]), run_type, int(images.get("processed") or 0))
        self.log.info("%s", decision.reason)
        context["ti"].xcom_push(key="decision", value=decision.as_dict())
        return self.go_on_task_id if decision.go_on else self.stop_task_id


class KeepCurrentModelOperator(ParamsSerializedOnce, BaseOperator):
    """The branch taken with too few new photos: says so in the log; the summary follows."""

    template_fields = ("decision",)
    ui_color = "#f4f1e8"

    def __init__(self, *, decision: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision

    def execute(self, context: Any) -> dict[str, Any]:
        decision = dict(self.decision or {})
        self.log.info("Kept the current model: %s", decision.get("reason", "too few new photos"))
        return decision
