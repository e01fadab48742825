"""Warm start: when the training request carries the ``model`` channel, and what it looks like."""

import botocore.session
import pytest
from botocore.validate import ParamValidator

from deeplens_pipeline import training
from deeplens_pipeline.params import ParamError, validate_params
from deeplens_pipeline.registry import META_BASE_NETWORK, META_IMAGE_SHAPE, RegisteredModel, encode_classes

MODEL = botocore.session.get_session().get_service_model("sagemaker")
ARTIFACT = "s3://deeplens-b/output/deeplens-train-old/output/model.tar.gz"
ARGS = dict(
    train_uri="s3://deeplens-b/m/train.manifest",
    validation_uri="s3://deeplens-b/m/val.manifest",
    output_uri="s3://deeplens-b/output/",
    num_training_samples=80,
)


def _validate(operation, request):
    report = ParamValidator().validate(request, MODEL.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def _current(classes=("a", "b"), base_network="resnet-50", image_shape="300", artifact=ARTIFACT):
    metadata = {
        **encode_classes(list(classes)),
        META_BASE_NETWORK: base_network,
        META_IMAGE_SHAPE: image_shape,
    }
    return RegisteredModel(
        arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/deeplens-models-x/3",
        version=3,
        status="Approved",
        model_artifact=artifact,
        image="img",
        metadata=metadata,
    )


PARAMS = {"classes": ["a", "b"], "image_shape": 300}


def test_the_param_defaults_to_on_and_is_a_boolean():
    assert validate_params({})["warm_start"] is True
    assert validate_params({"warm_start": False})["warm_start"] is False
    with pytest.raises(ParamError, match="warm_start"):
        validate_params({"warm_start": "yes"})


def test_same_classes_network_and_shape_warm_start_from_the_version():
    decision = training.warm_start_decision(validate_params(PARAMS), _current())
    assert decision.enabled and decision.version == 3 and decision.model_artifact == ARTIFACT
    assert decision.as_dict() == {
        "warm_started": True,
        "version": 3,
        "model_artifact": ARTIFACT,
        "reason": f"warm start from registry version 3 ({ARTIFACT}): "
        "same classes, base network and image shape",
    }


@pytest.mark.parametrize(
    ("current", "params", "why"),
    [
        (None, {}, "no Approved model in the registry yet"),
        (_current(), {"warm_start": False}, "params.warm_start is off"),
        (
            _current(classes=("b", "a")),
            {},
            "the classes changed: registry version 3 was trained for ['b', 'a']",
        ),
        (_current(classes=("a",)), {}, "the classes changed"),
        (_current(base_network="vgg-16"), {}, "the base network changed: registry version 3 is vgg-16"),
        (_current(image_shape="512"), {}, "the image shape changed: registry version 3 takes 512"),
        (_current(image_shape=""), {}, "takes (not recorded)"),
        (_current(artifact=""), {}, "registry version 3 has no model artefact"),
    ],
)
def test_otherwise_it_trains_from_the_backbone_and_says_why(current, params, why):
    decision = training.warm_start_decision(validate_params({**PARAMS, **params}), current)
    assert not decision.enabled and decision.version is None
    assert why in decision.reason
    assert decision.reason.endswith("training from the pretrained backbone")
    request = training.training_job_config(
        job_name="deeplens-train-x", params=validate_params({**PARAMS, **params}), warm_start=decision, **ARGS
    )
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation"]
    assert request["HyperParameters"]["use_pretrained_model"] == "1"


def test_the_training_request_carries_the_model_channel_sagemaker_documents():
    params = validate_params(PARAMS)
    decision = training.warm_start_decision(params, _current())
    request = training.training_job_config(
        job_name="deeplens-train-x", params=params, warm_start=decision, **ARGS
    )
    _validate("CreateTrainingJob", request)
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation", "model"]
    assert request["InputDataConfig"][-1] == {
        "ChannelName": "model",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": ARTIFACT,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": "application/x-sagemaker-model",
        "InputMode": "File",
    }
    # The weights come from the model channel, as in AWS's incremental-training sample.
    assert request["HyperParameters"]["use_pretrained_model"] == "0"
    assert request["HyperParameters"]["base_network"] == "resnet-50"
    assert request["HyperParameters"]["num_classes"] == "2"
    assert training.warm_start_of(request) == ARTIFACT
    assert training.warm_start_of({"InputDataConfig": request["InputDataConfig"][:2]}) is None


def test_the_tuning_request_warm_starts_every_training_job():
    params = validate_params(PARAMS)
    decision = training.warm_start_decision(params, _current())
    request = training.tuning_job_config(
        job_name="deeplens-tune-x", params=params, warm_start=decision, **ARGS
    )
    _validate("CreateHyperParameterTuningJob", request)
    definition = request["TrainingJobDefinition"]
    assert training.warm_start_of(definition) == ARTIFACT
    assert definition["StaticHyperParameters"]["use_pretrained_model"] == "0"


def test_the_run_summary_says_whether_and_from_which_version():
    from deeplens_pipeline.summary import build_summary, format_summary

    params = validate_params(PARAMS)
    warm = training.warm_start_decision(params, _current()).as_dict()
    summary = build_summary({"model": {"training_job": "deeplens-train-x", "warm_start": warm}})
    assert summary["warm_start"] == f"from registry version 3 ({ARTIFACT})"
    assert f"Warm start : from registry version 3 ({ARTIFACT})" in " ".join(format_summary(summary).split())
    cold = training.warm_start_decision(params, None).as_dict()
    assert build_summary({"model": {"warm_start": cold}})["warm_start"] == (
        "no: no Approved model in the registry yet: training from the pretrained backbone"
    )
    assert "Warm start" not in format_summary(build_summary({}))  # a run that never trained
