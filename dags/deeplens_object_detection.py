"""DeepLens object detection, end to end: photos → labels → SSD model → camera.

Stages (the original guide's steps in brackets): prepare and upload images [1, 2], label the new
ones with Label Studio or Ground Truth [3], split the labels into train and the fixed holdout [4],
train or tune the built-in object detector [4], score the new model and the current one on the
holdout, register the new one and let the gate decide (deploy only if its mAP reaches
params.min_map and the current model's minus params.max_regression; otherwise keep the current
model and say why), approve it (or wait for a person with params.require_approval), repack the
newest Approved version for the device [5], publish the inference Lambda [6] and deploy both to
the DeepLens [7]. Every value comes from the typed Params below (the trigger
form); every AWS call goes through the one connection ``aws_deeplens``, whose ``endpoint_url`` may
point at the embedded emulator; Label Studio is reached through ``label_studio_default``.
This file only wires; the work is in the ``deeplens_pipeline`` plugin package.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from deeplens_pipeline.airflow_compat import DAG, Param, TriggerRule, XComArg
from deeplens_pipeline.new_photos import QUEUE_URL_ENV
from deeplens_pipeline.new_photos_asset import dag_schedule
from deeplens_pipeline.operators.base import DEFAULT_CONN_ID
from deeplens_pipeline.operators.config import CheckParamsOperator
from deeplens_pipeline.operators.deploy import DeployToDeviceOperator, PublishInferenceLambdaOperator
from deeplens_pipeline.operators.evaluation import EvaluateCurrentModelOperator, EvaluateModelOperator
from deeplens_pipeline.operators.images import build_images_group
from deeplens_pipeline.operators.labeling import LabelImagesOperator
from deeplens_pipeline.operators.model import RepackModelOperator
from deeplens_pipeline.operators.new_photos import EnoughNewPhotosOperator, KeepCurrentModelOperator
from deeplens_pipeline.operators.registry import (
    ApproveModelOperator,
    GateOperator,
    RegisterModelOperator,
    RejectModelOperator,
)
from deeplens_pipeline.operators.report import EvaluationReportOperator
from deeplens_pipeline.operators.split import SplitManifestOperator
from deeplens_pipeline.operators.summary import RunSummaryOperator
from deeplens_pipeline.operators.training import (
    ChooseTrainingOperator,
    DeepLensTrainingOperator,
    DeepLensTuningOperator,
    PickModelOperator,
)
from deeplens_pipeline.params import PARAM_SPECS

CONN_ID = os.environ.get("DEEPLENS_AWS_CONN_ID", DEFAULT_CONN_ID)
LABEL_STUDIO_CONN_ID = os.environ.get("DEEPLENS_LABEL_STUDIO_CONN_ID", "label_studio_default")

with DAG(
    dag_id="deeplens_object_detection",
    description="Photos to a DeepLens object detector: label, train, repack, deploy",
    doc_md=__doc__,
    # New photos (S3 -> SQS -> asset watcher, when the queue is set), the optional cron, or by hand.
    schedule=dag_schedule(os.environ.get("DEEPLENS_SCHEDULE"), os.environ.get(QUEUE_URL_ENV), CONN_ID),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "aws_conn_id": CONN_ID},
    # Typed, titled and sectioned for the trigger form; optional ones nullable; rules in words.
    params={name: Param(spec.default, **spec.param_arguments()) for name, spec in PARAM_SPECS.items()},
    tags=["deeplens", "sagemaker", "object-detection"],
) as dag:
    # A bad value fails at once (AirflowFailException, never retried); other errors retry like any task.
    check = CheckParamsOperator(task_id="check_params")

    # Free text goes through tojson: the DAG renders templates as native objects, which would turn
    # "1e3" or "123" into a number; as JSON it comes back as the text the user gave.
    images = build_images_group(
        source="{{ params.image_source | tojson }}",
        bucket="{{ params.bucket }}",
        input_prefix="{{ params.input_prefix }}",
        image_shape="{{ params.image_shape }}",
        resize_mode="{{ params.resize_mode }}",
        pad_color="{{ params.pad_color }}",
        quality="{{ params.jpeg_quality }}",
        max_reject_share="{{ params.max_reject_share }}",
        decode_memory_mb="{{ params.decode_memory_mb }}",
        label_attribute="{{ params.label_attribute | tojson }}",
        classes="{{ params.classes }}",
        manifest="{{ params.labels_manifest | tojson }}",
        region_name="{{ params.region }}",
        aws_conn_id=CONN_ID,
    )

    enough = EnoughNewPhotosOperator(
        task_id="enough_new_photos",
        images=images,
        go_on_task_id="label_images",
        stop_task_id="keep_current_model",
        doc_md="Go on with at least params.min_new_photos new photos (or a manual run); else end green.",
    )
    decision = XComArg(enough, key="decision")
    keep = KeepCurrentModelOperator(task_id="keep_current_model", decision=decision)
    label = LabelImagesOperator(
        task_id="label_images", images=images, label_studio_conn_id=LABEL_STUDIO_CONN_ID
    )
    split = SplitManifestOperator(task_id="split_manifest")

    branch = ChooseTrainingOperator(
        task_id="choose_training", doc_md="One training job, or a tuning job, as params.training_mode says."
    )
    train = DeepLensTrainingOperator(
        task_id="train_model", split=split.output, region_name="{{ params.region }}"
    )
    tune = DeepLensTuningOperator(task_id="tune_model", split=split.output, region_name="{{ params.region }}")
    pick = PickModelOperator(task_id="pick_model", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)

    # A fair comparison: both models scored on the same fixed holdout (one batch transform job each).
    # (split_manifest is not a multiple_outputs task: its dict is read whole, then indexed.)
    holdout = "{{ ti.xcom_pull(task_ids='split_manifest')['validation_uri'] }}"
    evaluate_candidate = EvaluateModelOperator(
        task_id="evaluate_candidate",
        model_artifact="{{ ti.xcom_pull(task_ids='pick_model')['model_artifact'] }}",
        holdout_manifest=holdout,
        model_label="candidate",
    )
    evaluate_current = EvaluateCurrentModelOperator(
        task_id="evaluate_current",
        holdout_manifest=holdout,
        doc_md="The registry's newest Approved version on the same holdout; none yet: no job, map None.",
    )
    register = RegisterModelOperator(
        task_id="register_model", candidate=evaluate_candidate.output, model=pick.output
    )
    gate = GateOperator(
        task_id="gate",
        candidate=evaluate_candidate.output,
        current=evaluate_current.output,
        approve_task_id="approve_model",
        reject_task_id="reject_model",
        also_follow=("evaluation_report",),
        doc_md="Deploy only if the new model's holdout mAP >= params.min_map and >= the current "
        "model's minus params.max_regression; else keep the current model.",
    )
    gate_decision = XComArg(gate, key="decision")
    reject = RejectModelOperator(task_id="reject_model", registered=register.output, decision=gate_decision)
    approve = ApproveModelOperator(
        task_id="approve_model",
        registered=register.output,
        decision=gate_decision,
        doc_md="Approve the version, or with params.require_approval wait (in the triggerer) for a person.",
    )

    # >>> Evaluation report (issue 10, "Look, don't read"): the gate follows it on both branches
    # (also_follow), so it is drawn while a person decides with params.require_approval.
    report = EvaluationReportOperator(
        task_id="evaluation_report",
        candidate=evaluate_candidate.output,
        # None when there was no comparable current model (the report then shows the new one only).
        current="{{ none if (ti.xcom_pull(task_ids='evaluate_current') or {}).get('no_current_model') "
        "else ti.xcom_pull(task_ids='evaluate_current') }}",
        gate=gate_decision,
        # all_success (not none_failed): every upstream ran whenever the gate did; after "too few
        # new photos" they are all skipped, and so is the report.
    )
    # <<< Evaluation report

    # The device runs the newest Approved version: repack takes the registry's, not pick_model's.
    repack = RepackModelOperator(task_id="repack_model", model=approve.output, multiple_outputs=True)

    # What the device's inference function is configured with, for both the Lambda and the deployment.
    inference = {
        "model_name": repack.output["model_name"],
        "labels": "{{ params.classes }}",
        "image_shape": "{{ params.image_shape }}",
        "thing_name": "{{ params.thing_name }}",
        "threshold": "{{ params.detection_threshold }}",
        "resize_mode": "{{ params.resize_mode }}",
        "region_name": "{{ params.region }}",
    }
    publish = PublishInferenceLambdaOperator(
        task_id="publish_lambda",
        multiple_outputs=True,
        function_name="{{ params.lambda_function_name }}",
        role_arn="{{ params.lambda_role_arn }}",
        runtime="{{ params.lambda_runtime }}",
        **inference,
    )
    deploy = DeployToDeviceOperator(
        task_id="deploy_to_device",
        method="{{ params.deploy_method }}",
        model_s3_uri=repack.output["deploy_model_uri"],
        lambda_version_arn=publish.output["version_arn"],
        # ssh_host, ssh_user, ssh_key_file: read from the checked run config, as text ("10.0" stays
        # a host name; a template would render it as a number).
        poll_interval="{{ params.poll_seconds }}",
        **inference,
    )
    summary = RunSummaryOperator(
        task_id="summary",
        results={
            "images": images,
            "labeling": label.output,
            "split": split.output,
            "model": pick.output,
            "evaluation_candidate": evaluate_candidate.output,
            "evaluation_current": evaluate_current.output,
            "registry": register.output,
            # The gate's decision comes through approve/reject (an XComArg of the gate itself would
            # make the summary one of its branches).
            # A template, not XComArg(approve, key="approval"): that one fails the summary when
            # approve_model never ran (too few photos, or the gate kept the current model).
            "approval": "{{ ti.xcom_pull(task_ids='approve_model', key='approval') }}",
            "rejection": reject.output,
            "evaluation_report": report.output,
            "repack": repack.output,
            "function": publish.output,
            "deployment": deploy.output,
            "new_photos": keep.output,  # the decision, when too few new photos stopped the run
        },
        # Also when too few new photos (keep_current_model ran), when the gate kept the current
        # model (reject_model ran) and when a person rejected the version (the evaluations ran).
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )

    check >> images.operator.task_group
    images >> enough >> [label, keep]
    label >> split >> branch >> [train, tune] >> pick
    pick >> [evaluate_candidate, evaluate_current] >> register >> gate >> [approve, reject, report]
    evaluate_current >> report
    approve >> repack
    [deploy, keep, reject, approve] >> summary
