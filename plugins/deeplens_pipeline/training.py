"""SageMaker built-in object detection: training and tuning requests, and reading results.

No Airflow here: the operators pass these dicts to the Amazon provider's SageMaker hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deeplens_pipeline.registry import META_BASE_NETWORK, META_IMAGE_SHAPE, RegisteredModel

# Registry accounts of the built-in object-detection image, by region (SageMaker Python SDK's
# image_uri_config/object-detection.json lists them all).
OBJECT_DETECTION_ACCOUNTS = {
    "us-east-1": "811284229777",
    "us-east-2": "825641698319",
    "us-west-1": "632365934929",
    "us-west-2": "433757028032",
    "eu-west-1": "685385470294",
    "eu-central-1": "813361260812",
    "ap-northeast-1": "501404015308",
    "ap-southeast-2": "544295431143",
    "ap-northeast-2": "306986355934",
}
METRIC_NAME = "validation:mAP"
TUNED_OPTIMIZERS = ["sgd", "adam", "rmsprop", "adadelta"]


# Incremental training (SageMaker Developer Guide, "Object Detection - MXNet", Incremental Training):
# a channel named "model" of ContentType application/x-sagemaker-model holding the model.tar.gz
# of a built-in object-detection job; base_network and num_classes must be the earlier model's.
MODEL_CHANNEL = "model"
MODEL_CONTENT_TYPE = "application/x-sagemaker-model"


class TrainingConfigError(ValueError):
    """A training request cannot be built; the message names the parameter."""


@dataclass(frozen=True)
class WarmStart:
    """Whether a run trains from the current model, and why (or why not)."""

    model_artifact: str | None
    version: int | None
    reason: str

    @property
    def enabled(self) -> bool:
        return self.model_artifact is not None

    def as_dict(self) -> dict[str, Any]:
        """The XCom/summary form: ``{"warm_started", "version", "model_artifact", "reason"}``."""
        return {
            "warm_started": self.enabled,
            "version": self.version,
            "model_artifact": self.model_artifact,
            "reason": self.reason,
        }


def warm_start_decision(params: dict[str, Any], current: RegisteredModel | None) -> WarmStart:
    """Train from ``current`` (the registry's newest Approved version) when ``params.warm_start``
    is on and the version was trained for this run's classes (same names, same order: class ids
    are positions), base network and image shape; otherwise from the pretrained backbone.

    SageMaker itself requires the same ``base_network`` and ``num_classes``; equal class *names*
    and ``image_shape`` are this pipeline's stricter rule, so a warm-started model never maps a
    class id to another name or learns at another input size than the device runs.
    """
    if not params.get("warm_start", True):
        return WarmStart(None, None, "params.warm_start is off: training from the pretrained backbone")
    if current is None:
        return WarmStart(
            None, None, "no Approved model in the registry yet: training from the pretrained backbone"
        )
    label = f"registry version {current.version}"
    problems = []
    if not current.model_artifact:
        problems.append(f"{label} has no model artefact")
    if current.classes != list(params["classes"]):
        problems.append(
            f"the classes changed: {label} was trained for {current.classes}, this run has "
            f"{list(params['classes'])}"
        )
    network = current.metadata.get(META_BASE_NETWORK, "")
    if network != params["base_network"]:
        problems.append(
            f"the base network changed: {label} is {network or '(not recorded)'}, "
            f"params.base_network is {params['base_network']}"
        )
    shape = current.metadata.get(META_IMAGE_SHAPE, "")
    if shape != str(params["image_shape"]):
        problems.append(
            f"the image shape changed: {label} takes {shape or '(not recorded)'}, "
            f"params.image_shape is {params['image_shape']}"
        )
    if problems:
        return WarmStart(None, None, "; ".join(problems) + ": training from the pretrained backbone")
    return WarmStart(
        current.model_artifact,
        current.version,
        f"warm start from {label} ({current.model_artifact}): same classes, base network and image shape",
    )


def model_channel(model_artifact: str) -> dict[str, Any]:
    """The ``model`` channel of an incremental training job, as the SageMaker Python SDK builds it
    (``model_uri``): the model.tar.gz, in File mode whatever the job's input mode (the API
    reference, ``Channel.InputMode``: "To use a model for incremental training, choose File")."""
    return {
        "ChannelName": MODEL_CHANNEL,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": model_artifact,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": MODEL_CONTENT_TYPE,
        "InputMode": "File",
    }


def warm_start_of(description: dict[str, Any]) -> str | None:
    """The model channel's URI in a DescribeTrainingJob answer (None: trained without one)."""
    for channel in description.get("InputDataConfig") or []:
        if channel.get("ChannelName") == MODEL_CHANNEL:
            return channel["DataSource"]["S3DataSource"]["S3Uri"]
    return None


def object_detection_image(region: str, override: str = "") -> str:
    """The built-in object-detection algorithm's image URI in ``region`` (or ``override``)."""
    if override:
        return override
    account = OBJECT_DETECTION_ACCOUNTS.get(region)
    if account is None:
        raise TrainingConfigError(
            f"params.region: no built-in object-detection image is known for {region}; "
            f"known: {', '.join(sorted(OBJECT_DETECTION_ACCOUNTS))}; set params.training_image"
        )
    return f"{account}.dkr.ecr.{region}.amazonaws.com/object-detection:1"


def hyperparameters(
    params: dict[str, Any], num_training_samples: int, warm_start: WarmStart | None = None
) -> dict[str, str]:
    """The algorithm's hyperparameters from the DAG's parameters (all values as strings).

    A warm start sets ``use_pretrained_model`` to 0, as AWS's incremental-training sample does:
    the weights come from the model channel, not from ImageNet.
    """
    warm = warm_start is not None and warm_start.enabled
    values = {
        "base_network": params["base_network"],
        "use_pretrained_model": 0 if warm else params["use_pretrained_model"],
        "num_classes": len(params["classes"]),
        "num_training_samples": num_training_samples,
        "image_shape": params["image_shape"],
        "label_width": params["label_width"],
        "optimizer": params["optimizer"],
        "learning_rate": params["learning_rate"],
        "mini_batch_size": params["mini_batch_size"],
        "epochs": params["epochs"],
        "lr_scheduler_step": params["lr_scheduler_step"],
        "lr_scheduler_factor": 0.1,
        "nms_threshold": params["nms_threshold"],
    }
    if not values["lr_scheduler_step"]:
        del values["lr_scheduler_step"]
    return {key: str(value) for key, value in values.items()}


def _channel(name: str, manifest_uri: str, label_attribute: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "AugmentedManifestFile",
                "S3Uri": manifest_uri,
                "S3DataDistributionType": "FullyReplicated",
                "AttributeNames": ["source-ref", label_attribute],
            }
        },
        "ContentType": "application/x-recordio",
        "RecordWrapperType": "RecordIO",
        "InputMode": "Pipe",
        "CompressionType": "None",
    }


def _algorithm_parts(
    params: dict[str, Any],
    train_uri: str,
    validation_uri: str,
    output_uri: str,
    warm_start: WarmStart | None = None,
) -> dict[str, Any]:
    channels = [
        _channel("train", train_uri, params["label_attribute"]),
        _channel("validation", validation_uri, params["label_attribute"]),
    ]
    if warm_start is not None and warm_start.model_artifact:
        channels.append(model_channel(warm_start.model_artifact))
    return {
        "AlgorithmSpecification": {
            "TrainingImage": object_detection_image(params["region"], params.get("training_image", "")),
            "TrainingInputMode": "Pipe",
        },
        "RoleArn": params["role_arn"],
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output_uri},
        "ResourceConfig": {
            "InstanceType": params["instance_type"],
            "InstanceCount": 1,
            "VolumeSizeInGB": 50,
        },
        **_stopping(params, output_uri),
    }


def _stopping(params: dict[str, Any], output_uri: str) -> dict[str, Any]:
    """The stopping condition, and with ``use_spot_training`` managed spot training.

    SageMaker refuses ``MaxWaitTimeInSeconds`` without spot training and below
    ``MaxRuntimeInSeconds`` (the Params refuse the latter first). The built-in object detection
    algorithm saves checkpoints, so an interrupted spot job resumes from ``CheckpointConfig``
    (algorithms that do not are limited to a one-hour wait).
    """
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": int(params["max_runtime_hours"] * 3600)}
    if not params.get("use_spot_training"):
        return {"StoppingCondition": stopping}
    stopping["MaxWaitTimeInSeconds"] = int(params["max_wait_hours"] * 3600)
    return {
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": f"{output_uri.rstrip('/')}/checkpoints/"},
    }


def training_job_config(
    *,
    job_name: str,
    params: dict[str, Any],
    train_uri: str,
    validation_uri: str,
    output_uri: str,
    num_training_samples: int,
    warm_start: WarmStart | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob request (Pipe mode, RecordIO-wrapped augmented manifests; with a
    warm start, the ``model`` channel too)."""
    return {
        "TrainingJobName": job_name,
        "HyperParameters": hyperparameters(params, num_training_samples, warm_start),
        **_algorithm_parts(params, train_uri, validation_uri, output_uri, warm_start),
        "Tags": [{"Key": "deeplens:pipeline", "Value": "object-detection"}],
    }


def tuning_job_config(
    *,
    job_name: str,
    params: dict[str, Any],
    train_uri: str,
    validation_uri: str,
    output_uri: str,
    num_training_samples: int,
    warm_start: WarmStart | None = None,
) -> dict[str, Any]:
    """The CreateHyperParameterTuningJob request: learning rate and optimizer, maximising mAP
    (every training job of it warm-started alike when ``warm_start`` says so)."""
    static = hyperparameters(params, num_training_samples, warm_start)
    static.pop("learning_rate")
    static.pop("optimizer")
    return {
        "HyperParameterTuningJobName": job_name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": METRIC_NAME},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": params["tuning_max_jobs"],
                "MaxParallelTrainingJobs": params["tuning_max_parallel_jobs"],
            },
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": str(params["tuning_learning_rate_min"]),
                        "MaxValue": str(params["tuning_learning_rate_max"]),
                        "ScalingType": "Logarithmic",
                    }
                ],
                "CategoricalParameterRanges": [{"Name": "optimizer", "Values": TUNED_OPTIMIZERS}],
            },
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": static,
            **_algorithm_parts(params, train_uri, validation_uri, output_uri, warm_start),
        },
        "Tags": [{"Key": "deeplens:pipeline", "Value": "object-detection"}],
    }


def billing(description: dict[str, Any]) -> dict[str, Any]:
    """What a DescribeTrainingJob response says the job cost: its billable and training seconds,
    whether it ran on spot capacity, and the saving SageMaker's formula gives
    (``(1 - BillableTimeInSeconds / TrainingTimeInSeconds) * 100``)."""
    billable = description.get("BillableTimeInSeconds")
    trained = description.get("TrainingTimeInSeconds")
    spot = bool(description.get("EnableManagedSpotTraining"))
    saving = None
    if spot and billable is not None and trained:
        saving = round((1 - billable / trained) * 100, 1)
    return {
        "billable_seconds": billable,
        "training_seconds": trained,
        "spot": spot,
        "spot_saving_percent": saving,
    }


def final_metric(description: dict[str, Any], name: str = METRIC_NAME) -> float | None:
    """The final value of ``name`` in a DescribeTrainingJob response, or None."""
    for metric in description.get("FinalMetricDataList") or []:
        if metric.get("MetricName") == name:
            return float(metric["Value"])
    return None
