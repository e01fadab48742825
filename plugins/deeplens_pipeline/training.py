"""SageMaker built-in object detection: training and tuning requests, and reading results.

No Airflow here: the operators pass these dicts to the Amazon provider's SageMaker hook.
"""

from __future__ import annotations

from typing import Any

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


class TrainingConfigError(ValueError):
    """A training request cannot be built; the message names the parameter."""


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


def hyperparameters(params: dict[str, Any], num_training_samples: int) -> dict[str, str]:
    """The algorithm's hyperparameters from the DAG's parameters (all values as strings)."""
    values = {
        "base_network": params["base_network"],
        "use_pretrained_model": params["use_pretrained_model"],
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
    params: dict[str, Any], train_uri: str, validation_uri: str, output_uri: str
) -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": object_detection_image(params["region"], params.get("training_image", "")),
            "TrainingInputMode": "Pipe",
        },
        "RoleArn": params["role_arn"],
        "InputDataConfig": [
            _channel("train", train_uri, params["label_attribute"]),
            _channel("validation", validation_uri, params["label_attribute"]),
        ],
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
) -> dict[str, Any]:
    """The CreateTrainingJob request (Pipe mode, RecordIO-wrapped augmented manifests)."""
    return {
        "TrainingJobName": job_name,
        "HyperParameters": hyperparameters(params, num_training_samples),
        **_algorithm_parts(params, train_uri, validation_uri, output_uri),
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
) -> dict[str, Any]:
    """The CreateHyperParameterTuningJob request: learning rate and optimizer, maximising mAP."""
    static = hyperparameters(params, num_training_samples)
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
            **_algorithm_parts(params, train_uri, validation_uri, output_uri),
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
