"""The DAG's parameters: JSON-schema definitions and the checks made before any AWS call.

Pure data and functions (no Airflow): the DAG turns :data:`PARAM_SPECS` into ``Param`` objects
(:meth:`ParamSpec.param_arguments`), so the trigger form in the Airflow UI is typed and titled, and
the first task calls :func:`validate_params`, which checks each value and the rules between them,
naming the parameter and the rule in words.

Two places read the schemas, and both must say the same thing:

* Airflow itself, when a run is triggered (form, REST API, CLI): the API server validates the
  run's conf against each ``Param``'s JSON schema with Python's ``jsonschema`` and answers a bad
  value with ``Invalid input for param NAME: <jsonschema's message>``; the 3.3.1 form shows that
  answer and checks nothing itself but required fields. jsonschema's message for a ``pattern`` is
  the raw regex, so the form's schema puts each pattern under ``if`` with an ``else`` whose ``const``
  is the rule in words: the message becomes ``"<the rule in words>" was expected``.
* :func:`validate_params`, in the run's first task and in every operator that reads the run's
  configuration: everything the schema says, plus what a JSON schema cannot (names that differ
  only by case, steps beyond ``epochs``, NaN), with a message per rule.

Patterns are portable: JSON schema patterns are ECMA-262, but Python's ``re`` applies them. They are
written in the subset both read alike: ASCII character classes (Python's ``\\w`` and ``\\d`` take
any script's letters and digits, ECMA's do not) and :data:`END` instead of ``$`` (in Python ``$``
also matches before a final newline, so ``"name\\n"`` passed ``^name$``; ECMA-262 has no ``\\Z``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from deeplens_pipeline.deploy import ssh

END = r"(?![\s\S])"
"""The end of the text, in Python's ``re`` and in ECMA-262 alike (no character follows)."""
CONTROL = r"\u0000-\u001f\u007f-\u009f\u2028\u2029"
"""Control characters (C0 with newline and tab, DEL, C1) and the Unicode line separators, as a class body."""
TEXT_PATTERN = rf"^[^{CONTROL}]*{END}"
_CONTROL = re.compile(f"[{CONTROL}]")

ARN_ROLE = rf"^arn:aws[a-z-]*:iam::[0-9]{{12}}:role/[A-Za-z0-9_+=,.@/-]{{1,512}}{END}"
ARN_WORKTEAM = (
    rf"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{{12}}:workteam/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+{END}"
)
REGION = rf"^[a-z]{{2}}(-gov)?-[a-z]+-[0-9]{END}"
ROLE_RULE = "an IAM role ARN such as arn:aws:iam::123456789012:role/NAME"
# Python runtimes AWS Lambda supports and has not deprecated (late 2026; "Lambda runtimes" page):
# creating python3.7 functions is refused, python3.8 to python3.10 are deprecated and refused from
# 2027-02-01. The function's Python 3.7 code runs on these unchanged (it only runs on the device).
LAMBDA_RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
LAMBDA_RUNTIME_DEFAULT = "python3.13"
# Ground Truth takes no new customers: a new account's default is the team's own Label Studio.
LABELING_BACKENDS = ("label-studio", "ground-truth", "none")

# --- S3 bucket names --------------------------------------------------------------------------
# S3's rules for general purpose buckets (Amazon S3 User Guide, "General purpose bucket naming
# rules"), and DeepLens's own: it reads only buckets whose name begins with "deeplens-".
BUCKET_PREFIX = "deeplens-"
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Escaped by hand: re.escape writes "\-", which ECMA-262 refuses outside a class (the "u" flag).
_SUFFIXES = "|".join(suffix.replace(".", r"\.") for suffix in S3_RESERVED_SUFFIXES)
# "deeplens-" rules out S3's reserved prefixes and the IP-address form; 9 + 1..54 = 10..63 characters.
BUCKET_PATTERN = rf"^deeplens-(?![\s\S]*\.\.)(?![\s\S]*(?:{_SUFFIXES}){END})[a-z0-9.-]{{0,53}}[a-z0-9]{END}"
BUCKET_RULE = (
    "a bucket name that begins with 'deeplens-' (DeepLens reads only those) and keeps S3's naming "
    "rules: 10 to 63 lower-case letters, digits, '.' and '-', ending with a letter or a digit, no "
    f"'..', no reserved ending ({', '.join(S3_RESERVED_SUFFIXES)})"
)


def bucket_name_problem(name: str) -> str | None:
    """The first of S3's general purpose bucket naming rules that ``name`` breaks, in words; else None."""
    if not 3 <= len(name) <= 63:
        return f"must be 3 to 63 characters long, not {len(name)}"
    if not re.fullmatch(r"[a-z0-9.-]+", name):
        return "may hold only lower-case letters, digits, '.' and '-'"
    if not (re.fullmatch(r"[a-z0-9]", name[0]) and re.fullmatch(r"[a-z0-9]", name[-1])):
        return "must begin and end with a letter or a digit"
    if ".." in name:
        return "must not contain two adjacent periods ('..')"
    if re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", name):
        return "must not be formatted as an IP address"
    for prefix in S3_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"must not begin with {prefix!r}, which S3 reserves"
    for suffix in S3_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"must not end with {suffix!r}, which S3 reserves"
    return None


def _bucket_problem(name: str) -> str | None:
    if not name.startswith(BUCKET_PREFIX):
        return f"must begin with {BUCKET_PREFIX!r} (DeepLens can only read such buckets)"
    problem = bucket_name_problem(name)
    return f"{problem} (S3's bucket naming rules)" if problem else None


# --- the input prefix -------------------------------------------------------------------------
# The top-level prefixes the pipeline writes in its bucket (layout.BucketLayout, the images ledger,
# the reports, the device's function packages; a test checks this list against them): the photos'
# prefix must stay out of them, or a run would read its own outputs as photos, or overwrite them.
PIPELINE_PREFIXES = {
    "output/": "labelling and training jobs' outputs and the models",
    "labeling/": "the labelling task's files",
    "manifests/": "the label manifests",
    "reports/": "the runs' reports",
    "state/": "the images ledger",
    "deploy/": "the device's function packages",
}
_RESERVED = "|".join(prefix[:-1] for prefix in PIPELINE_PREFIXES)  # plain words: nothing to escape
_SEGMENT = r"(?!\.\.?/)[A-Za-z0-9_.-]+/"
INPUT_PREFIX_PATTERN = rf"^(?!(?:{_RESERVED})/)(?:{_SEGMENT})+{END}"
INPUT_PREFIX_RULE = (
    "a key prefix inside the bucket that ends with '/', such as input/ or photos/2026/: letters, "
    "digits, '_', '.' and '-' between the slashes, no leading '/', no '.' or '..' folder, and not "
    f"under the pipeline's own {', '.join(PIPELINE_PREFIXES)}"
)


def _input_prefix_problem(prefix: str) -> str | None:
    if prefix.startswith("/"):
        return "must be relative to the bucket: no leading '/'"
    if not prefix.endswith("/"):
        return "must end with '/'"
    segments = prefix[:-1].split("/")
    if "" in segments:
        return "must not contain an empty folder ('//')"
    if {".", ".."} & set(segments):
        return "must not contain a '.' or '..' folder: the prefix would point elsewhere in the bucket"
    bad = next((s for s in segments if not re.fullmatch(r"[A-Za-z0-9_.-]+", s)), None)
    if bad is not None:
        return f"folder {bad!r} may hold only letters, digits, '_', '.' and '-'"
    own = f"{segments[0]}/"
    if own in PIPELINE_PREFIXES:
        return f"must not be under {own}, where the pipeline keeps {PIPELINE_PREFIXES[own]}"
    return None


# --- class names ------------------------------------------------------------------------------
CLASS_PATTERN = rf"^[^\s{CONTROL}](?:[^{CONTROL}]{{0,98}}[^\s{CONTROL}])?{END}"
CLASS_RULE = "a class name of 1 to 100 characters with no space at either end and no control characters"


def _class_key(name: str) -> str:
    """What tells two class names apart for people and tools: not case, not spaces."""
    return "".join(name.split()).casefold()


RESERVED_CLASS_NAMES = ("detections", "status", "error", "stage", "where")
"""The device's messages use these keys beside the labels (``include/lambda/deeplens_logic.py``'s
``RESERVED_KEYS``; a test checks the two agree): a class named so would be misread."""


def _classes_problem(classes: list[str]) -> str | None:
    seen: dict[str, str] = {}
    for name in classes:
        if _class_key(name) in RESERVED_CLASS_NAMES:
            return (
                f"{name!r} is a key of the device's messages ({', '.join(RESERVED_CLASS_NAMES)}): "
                "name the class otherwise"
            )
        other = seen.setdefault(_class_key(name), name)
        if other != name:
            return (
                f"{other!r} and {name!r} differ only by case or spaces: labelling tools and the device "
                "would take them for one class"
            )
    return None


# --- learning-rate steps ----------------------------------------------------------------------
LR_STEPS_PATTERN = rf"^(?:[1-9][0-9]{{0,3}}(?:,[1-9][0-9]{{0,3}})*)?{END}"
LR_STEPS_RULE = (
    "epoch numbers from 1 separated by commas, such as 5,10,25,40, or nothing (the rate never drops)"
)


def _lr_steps_problem(text: str) -> str | None:
    parts = text.split(",") if text else []
    if any(part.isdigit() and int(part) == 0 for part in parts):
        return "epoch 0 is not a step: the algorithm counts epochs from 1"
    return None


# --- specs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One DAG parameter: its default, JSON schema, form title, section and help, and its rule in words.

    ``rule`` says what the schema's ``pattern`` accepts, as a noun phrase ("an IAM role ARN such as
    ..."), for the messages; ``optional`` Params may be left empty in the form (it sends null, which
    :func:`validate_params` turns back into the default, the empty string).
    """

    default: Any
    schema: dict[str, Any]
    title: str
    description: str
    section: str
    rule: str | None = None
    optional: bool = False

    def param_arguments(self) -> dict[str, Any]:
        """Keyword arguments for the DAG's ``Param`` besides the default: the trigger form's schema.

        An optional Param's type admits null (the 3.3.1 form requires every Param whose type does
        not, and sends a cleared field as null), and each pattern sits under ``if`` with the rule in
        words as the ``else`` branch's ``const``, so Airflow's answer to a bad value is the rule:
        ``Invalid input for param bucket: "a bucket name that begins with 'deeplens-' ..." was expected``.
        """
        schema = _worded(self.schema, self.rule)
        if self.optional:
            schema["type"] = ["null", schema["type"]]
        return {"title": self.title, "description": self.description, "section": self.section, **schema}


def _worded(schema: dict[str, Any], rule: str | None) -> dict[str, Any]:
    schema = dict(schema)
    if "items" in schema:
        schema["items"] = _worded(schema["items"], rule)
    pattern = schema.pop("pattern", None)
    if pattern is None:
        return schema
    # The value must match; when it does not, the else branch fails with jsonschema's message
    # "<const> was expected", and Airflow's answer shows the else branch, not the regex. (The rule's
    # own text would pass here; validate_params, in the run's first task, still refuses it.)
    return {"if": {"pattern": pattern}, "else": {"const": rule}, **schema}


def _spec(
    default: Any,
    section: str,
    title: str,
    description: str,
    *,
    rule: str | None = None,
    optional: bool = False,
    **schema: Any,
) -> ParamSpec:
    if "pattern" in schema and not rule:
        raise ValueError(f"{title}: a pattern needs its rule in words")
    return ParamSpec(default, schema, title, description, section, rule, optional)


def _text(default: str, section: str, title: str, description: str, max_length: int, **kw: Any) -> ParamSpec:
    """Free text: any characters but control characters (a newline, a tab...)."""
    return _spec(
        default,
        section,
        title,
        description,
        type="string",
        maxLength=max_length,
        pattern=kw.pop("pattern", TEXT_PATTERN),
        rule=kw.pop(
            "rule", f"text of at most {max_length} characters without control characters (newline, tab)"
        ),
        **kw,
    )


def _or_empty(pattern: str) -> str:
    """``pattern``, or the empty text (an optional Param)."""
    return f"^{END}|{pattern}"


PARAM_SPECS: dict[str, ParamSpec] = {
    # --- AWS --------------------------------------------------------------------------------
    "bucket": _spec(
        "deeplens-object-detection",
        "AWS",
        "S3 bucket",
        "S3 bucket for images, labels, manifests and models. DeepLens can only read buckets whose "
        "name begins with 'deeplens-'.",
        type="string",
        pattern=BUCKET_PATTERN,
        rule=BUCKET_RULE,
        minLength=10,
        maxLength=63,
    ),
    "region": _spec(
        "us-east-1",
        "AWS",
        "AWS region",
        "AWS region of every resource.",
        type="string",
        pattern=REGION,
        rule="an AWS region code such as us-east-1",
    ),
    "role_arn": _spec(
        "arn:aws:iam::123456789012:role/deeplens-sagemaker",
        "AWS",
        "SageMaker execution role",
        "SageMaker execution role (Ground Truth, training, tuning): its trust policy must name "
        "sagemaker.amazonaws.com (iam/sagemaker-execution-role*.json).",
        type="string",
        pattern=ARN_ROLE,
        rule=ROLE_RULE,
    ),
    # --- Images -----------------------------------------------------------------------------
    "image_source": _text(
        "",
        "Images",
        "Photo source",
        "Where the photos are: a local folder on the worker or an s3:// prefix. Empty: use only "
        "what is already under the input prefix.",
        1024,
        optional=True,
    ),
    "labels_manifest": _text(
        "",
        "Images",
        "Existing labels (manifest)",
        "Optional Ground Truth manifest (local path or s3://) with boxes the photos already have; "
        "those boxes are carried through preprocessing and the images skip labelling.",
        1024,
        optional=True,
    ),
    "input_prefix": _spec(
        "input/",
        "Images",
        "Input prefix",
        "Key prefix of the prepared JPEGs in the bucket (not under the pipeline's own prefixes).",
        type="string",
        pattern=INPUT_PREFIX_PATTERN,
        rule=INPUT_PREFIX_RULE,
        maxLength=512,
    ),
    "image_shape": _spec(
        512,
        "Images",
        "Image size (pixels)",
        "Side of the square training images, in pixels.",
        type="integer",
        enum=[300, 480, 512],
    ),
    "resize_mode": _spec(
        "letterbox",
        "Images",
        "Resize mode",
        "Make images square by padding (keeps every object) or by centre crop (may cut objects out).",
        type="string",
        enum=["letterbox", "crop"],
    ),
    "pad_color": _spec(
        "#000000",
        "Images",
        "Padding colour",
        "Letterbox padding colour.",
        type="string",
        pattern=rf"^#[0-9a-fA-F]{{6}}{END}",
        rule="a colour written #RRGGBB, such as #000000",
    ),
    "jpeg_quality": _spec(
        90, "Images", "JPEG quality", "JPEG quality.", type="integer", minimum=50, maximum=100
    ),
    "max_reject_share": _spec(
        0.2,
        "Images",
        "Largest share of unusable photos",
        "Fail the run when more than this share of the photos cannot be used.",
        type="number",
        minimum=0,
        maximum=1,
    ),
    "min_new_photos": _spec(
        1,
        "Images",
        "Fewest new photos worth a run",
        "A run started by new photos (or by the schedule) with fewer new photos than this (photos no "
        "run has had labelled yet, its own and earlier runs') ends after preparing them, keeping the "
        "current model; they count again towards the next run. A manual run always goes on.",
        type="integer",
        minimum=0,
        maximum=100000,
    ),
    "decode_memory_mb": _spec(
        512,
        "Images",
        "Memory to decode one photo (MiB)",
        "Most memory one photo may take to decode, in MiB, reckoned from its header (format, mode, and "
        "the reduced scale a JPEG is decoded at): a 102-megapixel camera JPEG needs about 20 MiB, a "
        "9500x9500 RGBA PNG about 700. A photo that needs more is rejected as a decompression bomb, "
        "its cost in the rejects report. Each worker process decodes one photo at a time.",
        type="integer",
        minimum=16,
        maximum=65536,
    ),
    # --- Labelling --------------------------------------------------------------------------
    "labeling_backend": _spec(
        "label-studio",
        "Labelling",
        "Labelling backend",
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
        "Object classes",
        "Object classes, in class_id order (one per line); names must differ by more than case or spaces.",
        type="array",
        items={"type": "string", "pattern": CLASS_PATTERN},
        rule=CLASS_RULE,
        minItems=1,
        maxItems=50,
        uniqueItems=True,
    ),
    "workteam_arn": _spec(
        "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/deeplens-team",
        "Labelling",
        "Ground Truth work team",
        "Ground Truth work team: private or vendor (the public crowd is refused: it needs a price "
        "per task and shows the photos to anyone).",
        type="string",
        pattern=ARN_WORKTEAM,
        rule="a SageMaker work team ARN such as arn:aws:sagemaker:REGION:ACCOUNT:workteam/private-crowd/NAME",
    ),
    "label_attribute": _spec(
        "bounding-box",
        "Labelling",
        "Label attribute",
        "Label attribute name in the manifests (one name across runs, so labels accumulate).",
        type="string",
        pattern=(rf"^(?![\s\S]*-(?:metadata|ref){END})[a-zA-Z0-9](?:-*[a-zA-Z0-9]){{0,126}}{END}"),
        rule="1 to 127 letters, digits or '-', beginning and ending with a letter or a digit, "
        "and not ending in '-metadata' or '-ref'",
        maxLength=127,
    ),
    "task_title": _text(
        "Draw a box around each object",
        "Labelling",
        "Task title",
        "Title workers see.",
        128,
        pattern=rf"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*{END}",
        rule="a title of at most 128 characters, not blank, without control characters (newline, tab)",
    ),
    "task_description": _text(
        "Draw a tight box around every object of the listed classes.",
        "Labelling",
        "Task instructions",
        "Instructions workers see.",
        255,
        pattern=rf"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*{END}",
        rule="instructions of at most 255 characters, not blank, without control characters (newline, tab)",
    ),
    "workers_per_image": _spec(
        1,
        "Labelling",
        "Workers per image",
        "Workers who label each image.",
        type="integer",
        minimum=1,
        maximum=9,
    ),
    "task_time_limit_seconds": _spec(
        300,
        "Labelling",
        "Time per image (seconds)",
        "Time a worker has for one image.",
        type="integer",
        minimum=30,
        maximum=28800,
    ),
    "labeling_timeout_days": _spec(
        30,
        "Labelling",
        "Labelling timeout (days)",
        "How long to wait for the labelling job (more than 0, at most 30 days).",
        type="number",
        exclusiveMinimum=0,
        maximum=30,
    ),
    # --- Training ---------------------------------------------------------------------------
    "validation_fraction": _spec(
        0.2,
        "Training",
        "Validation share",
        "Share of newly labelled images that join the fixed holdout (the validation set, never "
        "trained on); images already in it stay.",
        type="number",
        exclusiveMinimum=0,
        maximum=0.5,
    ),
    "split_seed": _spec(
        0,
        "Training",
        "Split seed",
        "Seed of the hash that places each new image in train or the holdout (a change moves no "
        "image already in the holdout).",
        type="integer",
    ),
    "training_mode": _spec(
        "train",
        "Training",
        "Training mode",
        "One training job, or a hyperparameter tuning job that keeps the best of many.",
        type="string",
        enum=["train", "tune"],
    ),
    "instance_type": _spec(
        "ml.p3.2xlarge",
        "Training",
        "Training instance type",
        "GPU instance for training.",
        type="string",
        pattern=rf"^ml\.[a-z0-9]+\.[a-z0-9]+{END}",
        rule="a SageMaker instance type such as ml.p3.2xlarge",
    ),
    "training_image": _spec(
        "",
        "Training",
        "Training image",
        "Training image URI; empty means the built-in object-detection image of params.region.",
        type="string",
        maxLength=255,
        pattern=rf"^[^\s{CONTROL}]*{END}",
        rule="an image URI without spaces or control characters, or nothing for the built-in image",
        optional=True,
    ),
    "max_runtime_hours": _spec(
        12,
        "Training",
        "Longest training (hours)",
        "Stop a training job after this long.",
        type="number",
        minimum=0.1,
        maximum=120,
    ),
    "use_spot_training": _spec(
        False,
        "Training",
        "Managed spot training",
        "Train on spare capacity (often 60-90% cheaper); an interrupted job resumes from its last "
        "checkpoint in S3. The run's summary reports the billable seconds and the saving.",
        type="boolean",
    ),
    "max_wait_hours": _spec(
        24,
        "Training",
        "Longest spot wait (hours)",
        "With spot training: longest time for waiting for capacity plus training; at least the "
        "longest training.",
        type="number",
        minimum=0.1,
        maximum=672,
    ),
    "base_network": _spec(
        "resnet-50",
        "Training",
        "Base network",
        "Backbone of the SSD.",
        type="string",
        enum=["resnet-50", "vgg-16"],
    ),
    "use_pretrained_model": _spec(
        1,
        "Training",
        "Pretrained weights",
        "Start from ImageNet weights (1) or not (0).",
        type="integer",
        enum=[0, 1],
    ),
    "warm_start": _spec(
        True,
        "Training",
        "Warm start",
        "Train from the current model (the registry's newest Approved version) when its classes, "
        "base network and image shape are this run's; otherwise from the pretrained backbone.",
        type="boolean",
    ),
    "label_width": _spec(
        50, "Training", "Label width", "Padded label width.", type="integer", minimum=6, maximum=1000
    ),
    "optimizer": _spec(
        "sgd",
        "Training",
        "Optimizer",
        "Optimizer.",
        type="string",
        enum=["sgd", "adam", "rmsprop", "adadelta"],
    ),
    "learning_rate": _spec(
        0.0005, "Training", "Learning rate", "Learning rate.", type="number", exclusiveMinimum=0, maximum=1
    ),
    "mini_batch_size": _spec(
        16, "Training", "Mini-batch size", "Mini-batch size.", type="integer", minimum=1, maximum=256
    ),
    "epochs": _spec(50, "Training", "Epochs", "Epochs.", type="integer", minimum=1, maximum=1000),
    "lr_scheduler_step": _spec(
        "5,10,25,40",
        "Training",
        "Learning-rate drop epochs",
        "Epochs at which the learning rate drops (comma separated, increasing, from 1 and below epochs).",
        type="string",
        pattern=LR_STEPS_PATTERN,
        rule=LR_STEPS_RULE,
    ),
    "tuning_max_jobs": _spec(
        30,
        "Tuning",
        "Training jobs",
        "Training jobs the tuner may run.",
        type="integer",
        minimum=1,
        maximum=500,
    ),
    "tuning_max_parallel_jobs": _spec(
        1,
        "Tuning",
        "Jobs at once",
        "Jobs run at once (1 makes the most of early stopping).",
        type="integer",
        minimum=1,
        maximum=100,
    ),
    "tuning_learning_rate_min": _spec(
        0.0001,
        "Tuning",
        "Lowest learning rate",
        "Learning rate range, low end.",
        type="number",
        exclusiveMinimum=0,
        maximum=1,
    ),
    "tuning_learning_rate_max": _spec(
        0.01,
        "Tuning",
        "Highest learning rate",
        "Learning rate range, high end.",
        type="number",
        exclusiveMinimum=0,
        maximum=1,
    ),
    # --- Evaluation -------------------------------------------------------------------------
    "min_map": _spec(
        0.0,
        "Evaluation",
        "Least holdout mAP to deploy",
        "The new model is deployed only if its mAP on the fixed holdout (VOC, IoU 0.5) is at least "
        "this; otherwise the device keeps the current model and the run says why.",
        type="number",
        minimum=0,
        maximum=1,
    ),
    "max_regression": _spec(
        0.02,
        "Evaluation",
        "Largest mAP drop allowed",
        "The new model is deployed only if its holdout mAP is at least the current model's minus "
        "this (both scored on the same holdout).",
        type="number",
        minimum=0,
        maximum=1,
    ),
    "require_approval": _spec(
        False,
        "Evaluation",
        "Wait for a person's approval",
        "A model that passes the gate waits (in the triggerer) until someone approves or rejects its "
        "version in the SageMaker model registry (console, or aws sagemaker update-model-package "
        "--model-approval-status Approved); off: the run approves it.",
        type="boolean",
    ),
    "evaluation_instance_type": _spec(
        "ml.m5.xlarge",
        "Evaluation",
        "Evaluation instance type",
        "Instance of the batch transform jobs that score both models on the holdout (CPU is enough).",
        type="string",
        enum=[
            "ml.m5.xlarge",
            "ml.m5.2xlarge",
            "ml.c5.xlarge",
            "ml.c5.2xlarge",
            "ml.p3.2xlarge",
            "ml.g4dn.xlarge",
        ],
    ),
    # --- Model ------------------------------------------------------------------------------
    "model_prefix": _spec(
        "deeplens_model",
        "Model",
        "Model prefix",
        "Prefix the model artefacts are renamed to; the device loads deploy_<prefix>.",
        type="string",
        pattern=rf"^[A-Za-z][A-Za-z0-9_]{{0,63}}{END}",
        rule="a letter followed by at most 63 letters, digits or '_'",
    ),
    "nms_threshold": _spec(
        0.45,
        "Model",
        "NMS threshold",
        "Non-maximum suppression threshold.",
        type="number",
        exclusiveMinimum=0,
        maximum=1,
    ),
    "replace_original_model": _spec(
        False,
        "Model",
        "Replace the original model",
        "Also overwrite the training job's model.tar.gz with the fixed one (as the original guide "
        "did); a backup copy is kept first.",
        type="boolean",
    ),
    # --- Device -----------------------------------------------------------------------------
    "thing_name": _spec(
        "deeplens_device",
        "Device",
        "DeepLens thing name",
        "IoT thing name of the DeepLens (deeplens_<uuid>).",
        type="string",
        pattern=rf"^deeplens_[A-Za-z0-9_-]{{1,120}}{END}",
        rule="the DeepLens's IoT thing name, deeplens_<uuid>: 'deeplens_' then 1 to 120 letters, "
        "digits, '_' or '-'",
    ),
    "deploy_method": _spec(
        "greengrass-v2",
        "Device",
        "Deploy method",
        "How the model reaches the device: a Greengrass V2 component (works from MWAA: the device "
        "pulls through AWS IoT), SSH (the worker must reach the device's address), or the classic "
        "Greengrass V1 path (its support ended on 7 October 2026; kept for the record).",
        type="string",
        enum=["greengrass-v1", "greengrass-v2", "ssh"],
    ),
    "lambda_function_name": _spec(
        "deeplens-object-detection",
        "Device",
        "Inference function name",
        "Inference function name (DeepLens requires the 'deeplens-' prefix).",
        type="string",
        pattern=rf"^deeplens-[A-Za-z0-9_-]{{1,55}}{END}",
        rule="a function name that begins with 'deeplens-' (DeepLens only runs such functions), "
        "then 1 to 55 letters, digits, '_' or '-'",
    ),
    "lambda_role_arn": _spec(
        "arn:aws:iam::123456789012:role/deeplens-lambda",
        "Device",
        "Inference function role",
        "Execution role of the inference Lambda function: its trust policy must name "
        "lambda.amazonaws.com (iam/lambda-execution-role*.json); the SageMaker role will not do.",
        type="string",
        pattern=ARN_ROLE,
        rule=ROLE_RULE,
    ),
    "ssh_host": _spec(
        "",
        "Device",
        "SSH: device address",
        "deploy_method=ssh: the DeepLens's address.",
        type="string",
        maxLength=255,
        pattern=_or_empty(ssh.HOST_PATTERN),
        rule=f"{ssh.HOST_RULE}; or nothing",
        optional=True,
    ),
    "ssh_user": _spec(
        "aws_cam",
        "Device",
        "SSH: login",
        "deploy_method=ssh: the login.",
        type="string",
        maxLength=64,
        pattern=ssh.USER_PATTERN,
        rule=ssh.USER_RULE,
    ),
    "ssh_key_file": _spec(
        "",
        "Device",
        "SSH: private key file",
        "deploy_method=ssh: private key file on the worker.",
        type="string",
        maxLength=1024,
        pattern=_or_empty(ssh.KEY_FILE_PATTERN),
        rule=f"{ssh.KEY_FILE_RULE}; or nothing",
        optional=True,
    ),
    "lambda_runtime": _spec(
        LAMBDA_RUNTIME_DEFAULT,
        "Device",
        "Lambda runtime",
        "Runtime the inference Lambda is created with (one AWS Lambda still accepts). On a "
        "Greengrass V1 core the function runs as Python 3.7 all the same (FunctionRuntimeOverride).",
        type="string",
        enum=list(LAMBDA_RUNTIMES),
    ),
    "detection_threshold": _spec(
        0.5,
        "Device",
        "Detection threshold",
        "Minimum score the device reports.",
        type="number",
        minimum=0,
        maximum=1,
    ),
    # --- Operations -------------------------------------------------------------------------
    "poll_seconds": _spec(
        60,
        "Operations",
        "Status check interval (seconds)",
        "Seconds between status checks of long AWS jobs.",
        type="integer",
        minimum=1,
        maximum=3600,
    ),
}

# Checks with a message per rule, made before the schema's (whose message is the rule as a whole).
_VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "bucket": _bucket_problem,
    "input_prefix": _input_prefix_problem,
    "lr_scheduler_step": _lr_steps_problem,
}


# One validator per Param, made once (jsonschema.validate would check the schema at every call).
_VALIDATORS = {name: jsonschema.Draft202012Validator(spec.schema) for name, spec in PARAM_SPECS.items()}


class ParamError(ValueError):
    """A parameter value is invalid; the message names the parameter and the rule."""


def _fail(name: str, reason: str, value: Any) -> ParamError:
    return ParamError(f"params.{name}: {reason} (got {value!r})")


_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
}


def _in_words(err: jsonschema.ValidationError, spec: ParamSpec) -> str:
    """The rule a jsonschema error reports, in words."""
    limit = err.validator_value
    return {
        "pattern": lambda: f"must be {spec.rule}",
        "type": lambda: f"must be {_TYPE_WORDS.get(limit, limit)}",
        "enum": lambda: f"must be one of {', '.join(map(repr, limit))}",
        "minimum": lambda: f"must be at least {limit}",
        "maximum": lambda: f"must be at most {limit}",
        "exclusiveMinimum": lambda: f"must be more than {limit}",
        "exclusiveMaximum": lambda: f"must be less than {limit}",
        "minLength": lambda: f"must be at least {limit} characters long",
        "maxLength": lambda: f"must be at most {limit} characters long",
        "minItems": lambda: f"must hold at least {limit} item{'s' if limit != 1 else ''}",
        "maxItems": lambda: f"must hold at most {limit} items",
        "uniqueItems": lambda: "must not repeat an item",
    }.get(err.validator, lambda: err.message)()


def _check_one(name: str, value: Any) -> Any:
    """``value`` checked; returns it as the operators see it (null → default, 5.0 → 5 for integers)."""
    spec = PARAM_SPECS[name]
    if value is None:
        if spec.optional:
            return spec.default
        raise _fail(name, "is required: leave it at its default rather than empty", value)
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        where = f"item {index + 1} " if isinstance(value, list) else ""
        if isinstance(item, str) and _CONTROL.search(item):
            raise _fail(name, f"{where}must not contain control characters such as a newline or a tab", value)
        if isinstance(item, float) and not math.isfinite(item):
            raise _fail(name, "must be a finite number", value)
    check = _VALUE_CHECKS.get(name)
    problem = check(value) if check is not None and isinstance(value, str) else None
    if problem:
        raise _fail(name, problem, value)
    err = jsonschema.exceptions.best_match(_VALIDATORS[name].iter_errors(value))
    if err is not None:
        where = "".join(f"item {p + 1} " for p in err.path)
        raise _fail(name, where + _in_words(err, spec), value)
    if name == "classes":
        problem = _classes_problem(value)
        if problem:
            raise _fail(name, problem, value)
    if spec.schema.get("type") == "integer":
        return int(value)
    return value


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check every parameter and the rules between them; return the complete, checked values.

    Raises :class:`ParamError` naming the first bad parameter and the rule in words. Unknown names
    are refused too, so a typo in a trigger's JSON does not pass silently. An optional Param left
    empty in the form arrives as null and is returned as its default (the empty string).
    """
    unknown = sorted(set(params) - set(PARAM_SPECS))
    if unknown:
        raise ParamError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(PARAM_SPECS)}")
    values = {name: _check_one(name, params.get(name, spec.default)) for name, spec in PARAM_SPECS.items()}
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
    for earlier, later in itertools.pairwise(steps):
        if later <= earlier:
            raise _fail(
                "lr_scheduler_step",
                f"the epochs must increase, but {later} follows {earlier}",
                v["lr_scheduler_step"],
            )
    if steps and steps[-1] >= v["epochs"]:
        raise _fail(
            "lr_scheduler_step",
            f"every step must be below params.epochs={v['epochs']} (the algorithm refuses a step it never "
            f"reaches), but {steps[-1]} is not",
            v["lr_scheduler_step"],
        )
    if v["tuning_learning_rate_min"] >= v["tuning_learning_rate_max"]:
        raise ParamError(
            "params.tuning_learning_rate_min: must be below params.tuning_learning_rate_max "
            f"(got {v['tuning_learning_rate_min']} >= {v['tuning_learning_rate_max']})"
        )
    if v["use_spot_training"] and v["max_wait_hours"] < v["max_runtime_hours"]:
        raise ParamError(
            "params.max_wait_hours: with spot training it must be at least params.max_runtime_hours "
            f"(got {v['max_wait_hours']} < {v['max_runtime_hours']}); SageMaker refuses a "
            "MaxWaitTimeInSeconds below MaxRuntimeInSeconds"
        )
    if v["tuning_max_parallel_jobs"] > v["tuning_max_jobs"]:
        raise ParamError("params.tuning_max_parallel_jobs: must not exceed params.tuning_max_jobs")
    if v["deploy_method"] == "ssh" and not v["ssh_host"]:
        raise ParamError("params.ssh_host: deploy_method 'ssh' needs the device's address")
    # The deploy step's own checks (deploy/ssh.py), made here too so a bad value fails at the start.
    # The schemas already hold these rules; this keeps validate_params right if a schema drifts.
    for name, valid, rule in (
        ("ssh_host", ssh.is_host, ssh.HOST_RULE),
        ("ssh_user", ssh.is_user, ssh.USER_RULE),
        ("ssh_key_file", ssh.is_key_file, ssh.KEY_FILE_RULE),
    ):
        if v[name] and not valid(v[name]):
            raise _fail(name, f"must be {rule}", v[name])
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


# --- this environment's defaults ----------------------------------------------------------------

RUN_DEFAULTS_ENV = "DEEPLENS_RUN_DEFAULTS"
"""A JSON object of Param values: this Airflow environment's defaults (bucket, image_source, roles...)."""


def with_run_defaults(specs: dict[str, ParamSpec], text: str | None) -> dict[str, ParamSpec]:
    """``specs`` with the defaults ``text`` (JSON object of Param values) sets, each value checked.

    A run nobody triggers by hand (new photos, the cron) gets only the Params' defaults: this is how
    an environment gives them its bucket and photo source. Read from the environment at parse (no
    I/O), they are the defaults of the DAG's Params, so the trigger form shows them, every template
    (``{{ params.bucket }}``) and :func:`validate_params` see them. A bad value raises
    :class:`ParamError` naming the variable and the parameter: the DAG does not import, and the
    import error says why.
    """
    if not text or not text.strip():
        return specs
    where = f"${RUN_DEFAULTS_ENV}"
    try:
        values = json.loads(text)
    except ValueError as err:
        raise ParamError(f"{where}: not JSON ({err})") from None
    if not isinstance(values, dict):
        raise ParamError(f'{where}: must be a JSON object of Param values, e.g. {{"bucket": "deeplens-x"}}')
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ParamError(f"{where}: unknown parameter(s): {', '.join(unknown)}")
    try:
        checked = {name: _check_one(name, value) for name, value in values.items()}
        merged = {
            name: dataclasses.replace(spec, default=checked[name]) if name in checked else spec
            for name, spec in specs.items()
        }
        _check_cross_field({name: spec.default for name, spec in merged.items()})
    except ParamError as err:
        raise ParamError(f"{where}: {err}") from None
    return merged


PARAM_SPECS.update(with_run_defaults(PARAM_SPECS, os.environ.get(RUN_DEFAULTS_ENV)))
