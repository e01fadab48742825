"""The emulator refuses what AWS refuses: deprecated Lambda runtimes and roles a service cannot assume."""

import io
import json
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError

REGION = "us-east-1"
PREFIX = "rules-"
ACS_LAMBDA = "arn:aws:lambda:us-east-1:432418664414:function:ACS-BoundingBox"


def trust(*services, deny=()):
    statements = [{"Effect": "Allow", "Principal": {"Service": list(services)}, "Action": "sts:AssumeRole"}]
    if deny:
        statements.append({"Effect": "Deny", "Principal": {"Service": list(deny)}, "Action": "sts:*"})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@pytest.fixture(scope="module")
def aws(emulator):
    clients = {
        s: boto3.client(s, endpoint_url=emulator.url, region_name=REGION)
        for s in ("iam", "lambda", "sagemaker", "iot")
    }
    iam = clients["iam"]
    roles = {
        "lambda": trust("lambda.amazonaws.com"),
        "sagemaker": trust("sagemaker.amazonaws.com"),
        "denied": trust("lambda.amazonaws.com", "sagemaker.amazonaws.com", deny=["lambda.amazonaws.com"]),
        "sagemaker-denied": trust("sagemaker.amazonaws.com", deny=["sagemaker.amazonaws.com"]),
        "iot": trust("iot.amazonaws.com"),
    }
    clients["roles"] = {
        key: iam.create_role(RoleName=f"{PREFIX}{key}", AssumeRolePolicyDocument=document)["Role"]["Arn"]
        for key, document in roles.items()
    }
    return clients


def code():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("lambda_function.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def create_function(aws, name, runtime="python3.12", role="lambda"):
    return aws["lambda"].create_function(
        FunctionName=f"{PREFIX}{name}",
        Runtime=runtime,
        Role=aws["roles"][role],
        Handler="lambda_function.handler",
        Code={"ZipFile": code()},
    )


def refused(call, code, message):
    with pytest.raises(ClientError) as err:
        call()
    error = err.value.response["Error"]
    assert (error["Code"], error["Message"]) == (code, message)


# --- Lambda runtimes ------------------------------------------------------------------------


def test_create_function_refuses_a_blocked_runtime(aws):
    refused(
        lambda: create_function(aws, "py37", runtime="python3.7"),
        "InvalidParameterValueException",
        "The runtime parameter of python3.7 is no longer supported for creating or updating AWS Lambda "
        "functions. We recommend you use the new runtime (python3.14) while creating or updating functions.",
    )
    with pytest.raises(aws["lambda"].exceptions.ResourceNotFoundException):
        aws["lambda"].get_function(FunctionName=f"{PREFIX}py37")


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_create_function_accepts_a_supported_runtime(aws, runtime):
    name = f"ok-{runtime.replace('.', '')}"
    assert create_function(aws, name, runtime=runtime)["Runtime"] == runtime


def test_update_function_configuration_refuses_a_blocked_runtime_and_accepts_a_supported_one(aws):
    create_function(aws, "update-runtime")
    name = f"{PREFIX}update-runtime"
    refused(
        lambda: aws["lambda"].update_function_configuration(FunctionName=name, Runtime="python3.6"),
        "InvalidParameterValueException",
        "The runtime parameter of python3.6 is no longer supported for creating or updating AWS Lambda "
        "functions. We recommend you use the new runtime (python3.14) while creating or updating functions.",
    )
    updated = aws["lambda"].update_function_configuration(FunctionName=name, Runtime="python3.13")
    assert updated["Runtime"] == "python3.13"


def test_a_function_on_a_runtime_blocked_for_updates_can_only_move_to_a_supported_one(aws):
    from moto.awslambda.models import lambda_backends

    create_function(aws, "legacy")
    name = f"{PREFIX}legacy"
    # As if created before python3.6 was blocked (2022): Lambda refuses any update that keeps it.
    function = lambda_backends["123456789012"][REGION].get_function(name)
    function.run_time = "python3.6"
    message = (
        "The runtime parameter of python3.6 is no longer supported for creating or updating AWS Lambda "
        "functions. We recommend you use the new runtime (python3.14) while creating or updating functions."
    )
    refused(
        lambda: aws["lambda"].update_function_code(FunctionName=name, ZipFile=code()),
        "InvalidParameterValueException",
        message,
    )
    refused(
        lambda: aws["lambda"].update_function_configuration(FunctionName=name, Timeout=10),
        "InvalidParameterValueException",
        message,
    )
    assert aws["lambda"].update_function_configuration(FunctionName=name, Runtime="python3.12")[
        "Runtime"
    ] == ("python3.12")
    assert aws["lambda"].update_function_code(FunctionName=name, ZipFile=code())["Runtime"] == "python3.12"


# --- Lambda role trust ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["sagemaker", "denied"])
def test_create_function_refuses_a_role_lambda_cannot_assume(aws, role):
    refused(
        lambda: create_function(aws, f"role-{role}", role=role),
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
    )


def test_update_function_configuration_checks_the_new_role(aws):
    create_function(aws, "update-role")
    name = f"{PREFIX}update-role"
    refused(
        lambda: aws["lambda"].update_function_configuration(
            FunctionName=name, Role=aws["roles"]["sagemaker"]
        ),
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
    )
    assert aws["lambda"].get_function(FunctionName=name)["Configuration"]["Role"] == aws["roles"]["lambda"]
    other = aws["iam"].create_role(
        RoleName=f"{PREFIX}lambda-2",
        AssumeRolePolicyDocument=trust("lambda.amazonaws.com", "edgelambda.amazonaws.com"),
    )["Role"]["Arn"]
    assert aws["lambda"].update_function_configuration(FunctionName=name, Role=other)["Role"] == other


# --- SageMaker role trust -------------------------------------------------------------------


def sagemaker_refusal(arn):
    return (
        f"Could not assume role {arn}. Please ensure that the role exists and allows principal "
        "'sagemaker.amazonaws.com' to assume the role."
    )


def training_request(name, role_arn, data_type="S3Prefix"):
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": role_arn,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": data_type, "S3Uri": "s3://deeplens-rules/train/"}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://deeplens-rules/output/"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


@pytest.mark.parametrize("role", ["lambda", "sagemaker-denied", "missing"])
def test_create_training_job_refuses_a_role_sagemaker_cannot_assume(aws, role):
    arn = aws["roles"].get(role, "arn:aws:iam::123456789012:role/rules-missing")
    refused(
        lambda: aws["sagemaker"].create_training_job(**training_request(f"rules-train-{role}", arn)),
        "ValidationException",
        sagemaker_refusal(arn),
    )


def test_create_training_job_with_a_trusted_role_reaches_the_training_handler(aws):
    # The emulator's own training handler answers next (it trains from augmented manifests only):
    # the role passed, and no training job was started.
    with pytest.raises(ClientError) as err:
        aws["sagemaker"].create_training_job(**training_request("rules-train-ok", aws["roles"]["sagemaker"]))
    assert "AugmentedManifestFile" in err.value.response["Error"]["Message"]


def test_create_tuning_job_checks_every_training_job_definition(aws):
    training = training_request("unused", aws["roles"]["sagemaker"])
    definition = {
        k: training[k]
        for k in (
            "AlgorithmSpecification",
            "RoleArn",
            "InputDataConfig",
            "OutputDataConfig",
            "ResourceConfig",
        )
    }
    definition["StoppingCondition"] = training["StoppingCondition"]
    config = {
        "Strategy": "Random",
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:mAP"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
    }
    bad = {**definition, "RoleArn": aws["roles"]["lambda"]}
    refused(
        lambda: aws["sagemaker"].create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="rules-tune-bad",
            HyperParameterTuningJobConfig=config,
            TrainingJobDefinition=bad,
        ),
        "ValidationException",
        sagemaker_refusal(aws["roles"]["lambda"]),
    )
    refused(
        lambda: aws["sagemaker"].create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="rules-tune-bad-2",
            HyperParameterTuningJobConfig=config,
            TrainingJobDefinitions=[{**definition, "DefinitionName": "a"}, {**bad, "DefinitionName": "b"}],
        ),
        "ValidationException",
        sagemaker_refusal(aws["roles"]["lambda"]),
    )
    # A trusted role reaches the emulator's tuning handler, which refuses this name's length itself.
    with pytest.raises(ClientError) as err:
        aws["sagemaker"].create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="rules-tune-with-a-name-over-32-chars",
            HyperParameterTuningJobConfig=config,
            TrainingJobDefinition=definition,
        )
    assert "longer than 32 characters" in err.value.response["Error"]["Message"]


def test_create_labeling_job_checks_its_role(aws):
    def request(role_arn, attribute):
        return {
            "LabelingJobName": f"rules-label-{attribute}",
            "LabelAttributeName": attribute,
            "InputConfig": {
                "DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://deeplens-rules/in.manifest"}}
            },
            "OutputConfig": {"S3OutputPath": "s3://deeplens-rules/output/"},
            "RoleArn": role_arn,
            "HumanTaskConfig": {
                "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/none",
                "UiConfig": {"UiTemplateS3Uri": "s3://deeplens-rules/t.html"},
                "PreHumanTaskLambdaArn": "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox",
                "TaskTitle": "t",
                "TaskDescription": "d",
                "NumberOfHumanWorkersPerDataObject": 1,
                "TaskTimeLimitInSeconds": 300,
                "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": ACS_LAMBDA},
            },
        }

    refused(
        lambda: aws["sagemaker"].create_labeling_job(**request(aws["roles"]["lambda"], "boxes")),
        "ValidationException",
        sagemaker_refusal(aws["roles"]["lambda"]),
    )
    # A trusted role reaches the emulator's Ground Truth handler, which refuses this attribute name.
    with pytest.raises(ClientError) as err:
        aws["sagemaker"].create_labeling_job(**request(aws["roles"]["sagemaker"], "boxes-metadata"))
    assert "LabelAttributeName" in err.value.response["Error"]["Message"]


def test_create_model_and_transform_job_need_a_role_sagemaker_can_assume(aws):
    sm, iam = aws["sagemaker"], aws["iam"]
    container = {
        "Image": "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:1",
        "ModelDataUrl": "s3://deeplens-rules/model.tar.gz",
    }
    refused(
        lambda: sm.create_model(
            ModelName="rules-model-bad", PrimaryContainer=container, ExecutionRoleArn=aws["roles"]["lambda"]
        ),
        "ValidationException",
        sagemaker_refusal(aws["roles"]["lambda"]),
    )
    role = iam.create_role(
        RoleName=f"{PREFIX}model", AssumeRolePolicyDocument=trust("sagemaker.amazonaws.com")
    )
    arn = role["Role"]["Arn"]
    sm.create_model(ModelName="rules-model", PrimaryContainer=container, ExecutionRoleArn=arn)

    def transform(name):
        return sm.create_transform_job(
            TransformJobName=name,
            ModelName="rules-model",
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://deeplens-rules/x/"}}
            },
            TransformOutput={"S3OutputPath": "s3://deeplens-rules/y/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )

    # CreateTransformJob refuses an S3Prefix with no object under it (tests/emulator/test_transform.py).
    s3 = boto3.client("s3", endpoint_url=sm.meta.endpoint_url, region_name=REGION)
    s3.create_bucket(Bucket="deeplens-rules")
    s3.put_object(Bucket="deeplens-rules", Key="x/photo.jpg", Body=b"")
    assert transform("rules-transform-ok")["TransformJobArn"]
    iam.update_assume_role_policy(RoleName=f"{PREFIX}model", PolicyDocument=trust("lambda.amazonaws.com"))
    refused(lambda: transform("rules-transform-bad"), "ValidationException", sagemaker_refusal(arn))


# --- IoT role alias -------------------------------------------------------------------------


def test_create_role_alias_checks_the_duration_not_the_trust(aws):
    iot, arn = aws["iot"], aws["roles"]["iot"]
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.create_role_alias(roleAlias="rules-too-long", roleArn=arn, credentialDurationSeconds=7200)
    # The trust of credentials.iot.amazonaws.com is checked when a device fetches credentials, not here.
    assert iot.create_role_alias(roleAlias="rules-alias", roleArn=arn, credentialDurationSeconds=3600)[
        "roleAlias"
    ]
