import botocore.session
import pytest
from botocore.validate import ParamValidator

from deeplens_pipeline import training
from deeplens_pipeline.params import validate_params

MODEL = botocore.session.get_session().get_service_model("sagemaker")


def _validate(operation, request):
    report = ParamValidator().validate(request, MODEL.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


ARGS = dict(
    train_uri="s3://deeplens-b/m/train.manifest",
    validation_uri="s3://deeplens-b/m/val.manifest",
    output_uri="s3://deeplens-b/output/",
    num_training_samples=80,
)


def test_training_request_matches_the_seed_and_the_service_model():
    params = validate_params({"classes": ["a", "b"], "image_shape": 480})
    request = training.training_job_config(job_name="deeplens-train-x", params=params, **ARGS)
    _validate("CreateTrainingJob", request)
    hp = request["HyperParameters"]
    assert hp == {
        "base_network": "resnet-50",
        "use_pretrained_model": "1",
        "num_classes": "2",
        "num_training_samples": "80",
        "image_shape": "480",
        "label_width": "50",
        "optimizer": "sgd",
        "learning_rate": "0.0005",
        "mini_batch_size": "16",
        "epochs": "50",
        "lr_scheduler_step": "5,10,25,40",
        "lr_scheduler_factor": "0.1",
        "nms_threshold": "0.45",
    }
    for channel in request["InputDataConfig"]:
        assert channel["InputMode"] == "Pipe"
        assert channel["RecordWrapperType"] == "RecordIO"
        assert channel["ContentType"] == "application/x-recordio"
        assert channel["DataSource"]["S3DataSource"]["S3DataType"] == "AugmentedManifestFile"
        assert channel["DataSource"]["S3DataSource"]["AttributeNames"] == ["source-ref", "bounding-box"]
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation"]
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:1"
    )


def test_tuning_request_ranges():
    params = validate_params({})
    request = training.tuning_job_config(job_name="deeplens-tune-x", params=params, **ARGS)
    _validate("CreateHyperParameterTuningJob", request)
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:mAP"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 30, "MaxParallelTrainingJobs": 1}
    (lr,) = config["ParameterRanges"]["ContinuousParameterRanges"]
    assert (lr["MinValue"], lr["MaxValue"]) == ("0.0001", "0.01")
    (opt,) = config["ParameterRanges"]["CategoricalParameterRanges"]
    assert opt["Values"] == ["sgd", "adam", "rmsprop", "adadelta"]
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert "learning_rate" not in static and "optimizer" not in static


def test_region_without_image_names_the_parameter():
    with pytest.raises(training.TrainingConfigError, match="params.region"):
        training.object_detection_image("af-south-1")
    assert training.object_detection_image("af-south-1", "my/image:1") == "my/image:1"


def test_final_metric():
    assert (
        training.final_metric({"FinalMetricDataList": [{"MetricName": "validation:mAP", "Value": 0.7}]})
        == 0.7
    )
    assert training.final_metric({}) is None
