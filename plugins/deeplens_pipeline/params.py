"""The DAG's parameters: JSON-schema definitions and the checks made before any AWS call.

Pure data and functions (no Airflow): the DAG turns :data:`PARAM_SPECS` into ``Param`` objects, so
the trigger form in the Airflow UI is typed, and the first task calls :func:`validate_params`,
which checks each value against its schema and the cross-field rules, naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

ARN_ROLE = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"
ARN_WORKTEAM = r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:workteam/[\w-]+/[\w-]+$"
REGION = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"
# Python runtimes AWS Lambda supports and has not deprecated (late 2026; "Lambda runtimes" page):
# creating python3.7 functions is refused, python3.8 to python3.10 are deprecated and refused from
# 2027-02-01. The function's Python 3.7 code runs on these unchanged (it only runs on the device).
LAMBDA_RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
LAMBDA_RUNTIME_DEFAULT = "python3.13"
# Ground Truth takes no new customers: a new account's default is the team's own Label Studio.
LABELING_BACKENDS = ("label-studio", "ground-truth", "none")


@dataclass(frozen=True)
class ParamSpec:
    """One DAG parameter: its default, JSON schema, form section and help text."""

    default: Any
    schema: dict[str, Any]
    description: str
    section: str


def _spec(default: Any, section: str, description: str, **schema: Any) -> ParamSpec:
    return ParamSpec(default=default, schema=schema, description=description, section=section)


PARAM_SPECS: dict[str, ParamSpec] = {
    # --- AWS --------------------------------------------------------------------------------
    "bucket": _spec(
        "deeplens-object-detection",
        "AWS",
        "S3 bucket for images, labels, manifests and models. DeepLens can only read buckets whose "
        "name begins with 'deeplens-'.",
        type="string",
        pattern=r"^deeplens-[a-z0-9][a-z0-9.-]{0,52}[a-z0-9]$",
        minLength=11,
        maxLength=63,
    ),
    "region": _spec("us-east-1", "AWS", "AWS region of every resource.", type="string", pattern=REGION),
    "role_arn": _spec(
        "arn:aws:iam::123456789012:role/deeplens-sagemaker",
        "AWS",
        "SageMaker execution role (Ground Truth, training, tuning): its trust policy must name "
        "sagemaker.amazonaws.com (iam/sagemaker-execution-role*.json).",
        type="string",
        pattern=ARN_ROLE,
    ),
    # --- Images -----------------------------------------------------------------------------
    "image_source": _spec(
        "",
        "Images",
        "Where the photos are: a local folder on the worker or an s3:// prefix. Empty: use only "
        "what is already under the input prefix.",
        type="string",
        maxLength=1024,
    ),
    "labels_manifest": _spec(
        "",
        "Images",
        "Optional Ground Truth manifest (local path or s3://) with boxes the photos already have; "
        "those boxes are carried through preprocessing and the images skip labelling.",
        type="string",
        maxLength=1024,
    ),
    "input_prefix": _spec(
        "input/", "Images", "Key prefix of the prepared JPEGs.", type="string", pattern=r"^[\w./-]*/$"
    ),
    "image_shape": _spec(
        512, "Images", "Side of the square training images, in pixels.", type="integer", enum=[300, 480, 512]
    ),
    "resize_mode": _spec(
        "letterbox",
        "Images",
        "Make images square by padding (keeps every object) or by centre crop (may cut objects out).",
        type="string",
        enum=["letterbox", "crop"],
    ),
    "pad_color": _spec(
        "#000000", "Images", "Letterbox padding colour.", type="string", pattern=r"^#[0-9a-fA-F]{6}$"
    ),
    "jpeg_quality": _spec(90, "Images", "JPEG quality.", type="integer", minimum=50, maximum=100),
    "max_reject_share": _spec(
        0.2,
        "Images",
        "Fail the run when more than this share of the photos cannot be used.",
        type="number",
        minimum=0,
        maximum=1,
    ),
    # --- Labelling --------------------------------------------------------------------------
    "labeling_backend": _spec(
        "label-studio",
        "Labelling",
        "Who draws the boxes: 'label-studio' (the team's own Label Studio server, through the "
        "Airflow connection label_studio_default), 'ground-truth' (SageMaker Ground Truth: only for "
        "accounts that already use it, as it takes no new customers), or 'none' (labels only from "
        "labels_manifest or VOC files; images without boxes are reported and left out).",
        type="string",
        enum=list(LABELING_BACKENDS),
    ),
    "classes": _spec(
        ["blue_box", "yellow_box"],
        "Labelling",
        "Object classes, in class_id order.",
        type="array",
        items={"type": "string", "pattern": r"^[^\s].{0,99}$"},
        minItems=1,
        maxItems=50,
        uniqueItems=True,
    ),
    "workteam_arn": _spec(
        "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/deeplens-team",
        "Labelling",
        "Ground Truth work team: private or vendor (the public crowd is refused: it needs a price "
        "per task and shows the photos to anyone).",
        type="string",
        pattern=ARN_WORKTEAM,
    ),
    "label_attribute": _spec(
        "bounding-box",
        "Labelling",
        "Label attribute name in the manifests (one name across runs, so labels accumulate).",
        type="string",
        pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$",
        **{"not": {"pattern": r"(-metadata|-ref)$"}},
    ),
    "task_title": _spec(
        "Draw a box around each object", "Labelling", "Title workers see.", type="string", maxLength=128
    ),
    "task_description": _spec(
        "Draw a tight box around every object of the listed classes.",
        "Labelling",
        "Instructions workers see.",
        type="string",
        maxLength=255,
    ),
    "workers_per_image": _spec(
        1, "Labelling", "Workers who label each image.", type="integer", minimum=1, maximum=9
    ),
    "task_time_limit_seconds": _spec(
        300, "Labelling", "Time a worker has for one image.", type="integer", minimum=30, maximum=28800
    ),
    "labeling_timeout_days": _spec(
        30, "Labelling", "How long to wait for the labelling job.", type="number", minimum=0, maximum=30
    ),
    # --- Training ---------------------------------------------------------------------------
    "validation_fraction": _spec(
        0.2,
        "Training",
        "Share of labelled images held out for validation.",
        type="number",
        exclusiveMinimum=0,
        maximum=0.5,
    ),
    "split_seed": _spec(0, "Training", "Seed of the reproducible train/validation split.", type="integer"),
    "training_mode": _spec(
        "train",
        "Training",
        "One training job, or a hyperparameter tuning job that keeps the best of many.",
        type="string",
        enum=["train", "tune"],
    ),
    "instance_type": _spec(
        "ml.p3.2xlarge",
        "Training",
        "GPU instance for training.",
        type="string",
        pattern=r"^ml\.[a-z0-9]+\.\w+$",
    ),
    "training_image": _spec(
        "",
        "Training",
        "Training image URI; empty means the built-in object-detection image of params.region.",
        type="string",
        maxLength=255,
    ),
    "max_runtime_hours": _spec(
        12, "Training", "Stop a training job after this long.", type="number", minimum=0.1, maximum=120
    ),
    "base_network": _spec(
        "resnet-50", "Training", "Backbone of the SSD.", type="string", enum=["resnet-50", "vgg-16"]
    ),
    "use_pretrained_model": _spec(1, "Training", "Start from ImageNet weights.", type="integer", enum=[0, 1]),
    "label_width": _spec(50, "Training", "Padded label width.", type="integer", minimum=6, maximum=1000),
    "optimizer": _spec(
        "sgd", "Training", "Optimizer.", type="string", enum=["sgd", "adam", "rmsprop", "adadelta"]
    ),
    "learning_rate": _spec(
        0.0005, "Training", "Learning rate.", type="number", exclusiveMinimum=0, maximum=1
    ),
    "mini_batch_size": _spec(16, "Training", "Mini-batch size.", type="integer", minimum=1, maximum=256),
    "epochs": _spec(50, "Training", "Epochs.", type="integer", minimum=1, maximum=1000),
    "lr_scheduler_step": _spec(
        "5,10,25,40",
        "Training",
        "Epochs at which the learning rate drops (comma separated, increasing, below epochs).",
        type="string",
        pattern=r"^(\d+(,\d+)*)?$",
    ),
    "tuning_max_jobs": _spec(
        30, "Tuning", "Training jobs the tuner may run.", type="integer", minimum=1, maximum=500
    ),
    "tuning_max_parallel_jobs": _spec(
        1,
        "Tuning",
        "Jobs run at once (1 makes the most of early stopping).",
        type="integer",
        minimum=1,
        maximum=100,
    ),
    "tuning_learning_rate_min": _spec(
        0.0001, "Tuning", "Learning rate range, low end.", type="number", exclusiveMinimum=0
    ),
    "tuning_learning_rate_max": _spec(
        0.01, "Tuning", "Learning rate range, high end.", type="number", exclusiveMinimum=0
    ),
    # --- Model ------------------------------------------------------------------------------
    "model_prefix": _spec(
        "deeplens_model",
        "Model",
        "Prefix the model artefacts are renamed to; the device loads deploy_<prefix>.",
        type="string",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
    ),
    "nms_threshold": _spec(
        0.45, "Model", "Non-maximum suppression threshold.", type="number", exclusiveMinimum=0, maximum=1
    ),
    "replace_original_model": _spec(
        False,
        "Model",
        "Also overwrite the training job's model.tar.gz with the fixed one (as the original guide "
        "did); a backup copy is kept first.",
        type="boolean",
    ),
    # --- Device -----------------------------------------------------------------------------
    "thing_name": _spec(
        "deeplens_device",
        "Device",
        "IoT thing name of the DeepLens (deeplens_<uuid>).",
        type="string",
        pattern=r"^deeplens_[A-Za-z0-9_-]{1,120}$",
    ),
    "deploy_method": _spec(
        "greengrass-v2",
        "Device",
        "How the model reaches the device: a Greengrass V2 component (works from MWAA: the device "
        "pulls through AWS IoT), SSH (the worker must reach the device's address), or the classic "
        "Greengrass V1 path (its support ended on 7 October 2026; kept for the record).",
        type="string",
        enum=["greengrass-v1", "greengrass-v2", "ssh"],
    ),
    "lambda_function_name": _spec(
        "deeplens-object-detection",
        "Device",
        "Inference function name (DeepLens requires the 'deeplens-' prefix).",
        type="string",
        pattern=r"^deeplens-[A-Za-z0-9_-]{1,55}$",
    ),
    "lambda_role_arn": _spec(
        "arn:aws:iam::123456789012:role/deeplens-lambda",
        "Device",
        "Execution role of the inference Lambda function: its trust policy must name "
        "lambda.amazonaws.com (iam/lambda-execution-role*.json); the SageMaker role will not do.",
        type="string",
        pattern=ARN_ROLE,
    ),
    "ssh_host": _spec(
        "", "Device", "deploy_method=ssh: the DeepLens's address.", type="string", maxLength=255
    ),
    "ssh_user": _spec("aws_cam", "Device", "deploy_method=ssh: the login.", type="string", maxLength=64),
    "ssh_key_file": _spec(
        "", "Device", "deploy_method=ssh: private key file on the worker.", type="string", maxLength=1024
    ),
    "lambda_runtime": _spec(
        LAMBDA_RUNTIME_DEFAULT,
        "Device",
        "Runtime the inference Lambda is created with (one AWS Lambda still accepts). On a "
        "Greengrass V1 core the function runs as Python 3.7 all the same (FunctionRuntimeOverride).",
        type="string",
        enum=list(LAMBDA_RUNTIMES),
    ),
    "detection_threshold": _spec(
        0.5, "Device", "Minimum score the device reports.", type="number", minimum=0, maximum=1
    ),
    # --- Operations -------------------------------------------------------------------------
    "poll_seconds": _spec(
        60,
        "Operations",
        "Seconds between status checks of long AWS jobs.",
        type="integer",
        minimum=1,
        maximum=3600,
    ),
}

# Reasons shown when a pattern fails, so the message says why and not only the regex.
_PATTERN_REASONS = {
    "bucket": "must begin with 'deeplens-' (DeepLens can only read such buckets) and be a valid S3 "
    "bucket name (lower case, digits, '.', '-', 11 to 63 characters)",
    "role_arn": "must be an IAM role ARN such as arn:aws:iam::123456789012:role/NAME",
    "workteam_arn": "must be a SageMaker workteam ARN such as "
    "arn:aws:sagemaker:REGION:ACCOUNT:workteam/private-crowd/NAME",
    "thing_name": "must be the DeepLens IoT thing name, deeplens_<uuid>",
    "lambda_function_name": "must begin with 'deeplens-' (DeepLens only runs such functions)",
    "lambda_role_arn": "must be an IAM role ARN such as arn:aws:iam::123456789012:role/NAME",
    "label_attribute": "must be 1-127 letters, digits or '-' and must not end in '-metadata' or '-ref'",
}


class ParamError(ValueError):
    """A parameter value is invalid; the message names the parameter."""


def _check_one(name: str, value: Any) -> None:
    spec = PARAM_SPECS[name]
    try:
        jsonschema.validate(value, spec.schema)
    except jsonschema.ValidationError as err:
        reason = _PATTERN_REASONS.get(name) if err.validator in ("pattern", "not") else None
        raise ParamError(f"params.{name}: {reason or err.message} (got {value!r})") from None


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check every parameter and the rules between them; return the complete, checked values.

    Raises :class:`ParamError` naming the first bad parameter. Unknown names are refused too, so a
    typo in a trigger's JSON does not pass silently.
    """
    unknown = sorted(set(params) - set(PARAM_SPECS))
    if unknown:
        raise ParamError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(PARAM_SPECS)}")
    values = {name: params.get(name, spec.default) for name, spec in PARAM_SPECS.items()}
    for name, value in values.items():
        _check_one(name, value)
    _check_cross_field(values)
    return values


def param_warnings(values: dict[str, Any]) -> list[str]:
    """What a checked configuration may get wrong on a real account, in words (logged, not fatal)."""
    warnings = []
    if values["deploy_method"] == "greengrass-v1":
        warnings.append(
            "params.deploy_method 'greengrass-v1': AWS ended Greengrass V1 support on 7 October 2026 and "
            "its cloud resources are no longer reachable; choose 'greengrass-v2' (a Greengrass V2 core on "
            "the DeepLens) or 'ssh' (see the README's device section)"
        )
    if values["role_arn"] == values["lambda_role_arn"]:
        warnings.append(
            "params.lambda_role_arn is the SageMaker role: Lambda refuses a role whose trust policy does "
            "not name lambda.amazonaws.com"
        )
    return warnings


def _check_cross_field(v: dict[str, Any]) -> None:
    if v["labeling_backend"] == "ground-truth":
        _check_workteam(v)
    steps = [int(s) for s in v["lr_scheduler_step"].split(",") if s]
    if steps != sorted(set(steps)) or (steps and steps[-1] >= v["epochs"]):
        raise ParamError(
            f"params.lr_scheduler_step: steps must increase and stay below params.epochs="
            f"{v['epochs']} (got {v['lr_scheduler_step']!r})"
        )
    if v["tuning_learning_rate_min"] >= v["tuning_learning_rate_max"]:
        raise ParamError(
            "params.tuning_learning_rate_min: must be below params.tuning_learning_rate_max "
            f"(got {v['tuning_learning_rate_min']} >= {v['tuning_learning_rate_max']})"
        )
    if v["tuning_max_parallel_jobs"] > v["tuning_max_jobs"]:
        raise ParamError("params.tuning_max_parallel_jobs: must not exceed params.tuning_max_jobs")
    if v["deploy_method"] == "ssh" and not v["ssh_host"]:
        raise ParamError("params.ssh_host: deploy_method 'ssh' needs the device's address")
    source = v["image_source"]
    if source.startswith("s3://") and len(source) <= len("s3://"):
        raise ParamError("params.image_source: an s3:// source needs a bucket, e.g. s3://bucket/photos/")


def _check_workteam(v: dict[str, Any]) -> None:
    if ":workteam/public-crowd/" in v["workteam_arn"]:
        raise ParamError(
            "params.workteam_arn: the public crowd (Amazon Mechanical Turk) is not supported: it needs a "
            "price per task and at most 12 hours of task availability, and it shows the photos to anyone; "
            "use a private or vendor work team"
        )
    workteam_region = v["workteam_arn"].split(":")[3]
    if workteam_region != v["region"]:
        raise ParamError(
            f"params.workteam_arn: the work team is in {workteam_region} but params.region is "
            f"{v['region']}; Ground Truth needs both in one region"
        )
