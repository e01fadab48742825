"""The baseline of scripts/bench_parse.py: a DAG built like the Amazon provider's system test.

Modelled on apache/airflow ``providers/amazon/tests/system/amazon/aws/example_sagemaker.py``
(Apache-2.0): the same imports, the same operators, sensors and ``@task`` functions wired the same
way, so parsing it costs what parsing the provider's own SageMaker example costs. Left out: the
system-test helpers that need a real account or the Airflow source tree (``SystemTestContextBuilder``,
``prune_logs``, ``watcher``, ``get_test_run``); small ``@task`` stand-ins take their places, so the
DAG has the same tasks and edges. Nothing here runs against AWS: it is only ever parsed.
"""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import datetime
from tempfile import NamedTemporaryFile
from textwrap import dedent
from typing import TYPE_CHECKING

import boto3
from airflow.providers.amazon.aws.operators.s3 import (
    S3CreateBucketOperator,
    S3CreateObjectOperator,
    S3DeleteBucketOperator,
)
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerAutoMLOperator,
    SageMakerCreateExperimentOperator,
    SageMakerDeleteModelOperator,
    SageMakerModelOperator,
    SageMakerProcessingOperator,
    SageMakerRegisterModelVersionOperator,
    SageMakerTrainingOperator,
    SageMakerTransformOperator,
    SageMakerTuningOperator,
)
from airflow.providers.amazon.aws.sensors.sagemaker import (
    SageMakerAutoMLSensor,
    SageMakerProcessingSensor,
    SageMakerTrainingSensor,
    SageMakerTransformSensor,
    SageMakerTuningSensor,
)
from airflow.providers.amazon.version_compat import AIRFLOW_V_3_0_PLUS
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from airflow.decorators import task
    from airflow.models.baseoperator import chain
    from airflow.models.dag import DAG
else:
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import DAG, chain, task
    else:
        from airflow.decorators import task
        from airflow.models.baseoperator import chain
        from airflow.models.dag import DAG
from airflow.utils.trigger_rule import TriggerRule

logger = logging.getLogger(__name__)

DAG_ID = "example_sagemaker"
ENV_ID_KEY = "ENV_ID"
ROLE_ARN_KEY = "ROLE_ARN"
KNN_IMAGES_BY_REGION = {
    "us-east-1": "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1",
    "us-west-2": "174872318107.dkr.ecr.us-west-2.amazonaws.com/knn:1",
}
SAMPLE_SIZE = 600

# The entry point of the preprocessing image (as in the system test: built at parse, used at run).
PREPROCESS_SCRIPT_TEMPLATE = dedent("""
    import numpy as np
    import pandas as pd

    def main():
        data = pd.read_csv('{input_path}/input.csv')
        data_train, data_test = np.split(
            data.sample(frac=1, random_state=np.random.RandomState()), [int(0.7 * len(data))]
        )
        data_test.drop(['class'], axis=1, inplace=True)
        data_train.to_csv('{output_path}/train.csv', index=False, header=False)
        data_test.to_csv('{output_path}/test.csv', index=False, header=False)

    if __name__ == "__main__":
        main()
""")


def _create_ecr_repository(repo_name):
    client = boto3.client("ecr")
    role = boto3.client("sts").get_caller_identity()["Arn"]
    repo = client.create_repository(repositoryName=repo_name)["repository"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": role}}]}
    client.set_repository_policy(repositoryName=repo["repositoryName"], policyText=json.dumps(policy))
    return repo["repositoryUri"]


def _build_and_upload_docker_image(preprocess_script, repository_uri):
    with NamedTemporaryFile(mode="w+t") as script, NamedTemporaryFile(mode="w+t") as dockerfile:
        script.write(preprocess_script)
        script.flush()
        dockerfile.write(f"FROM public.ecr.aws/amazonlinux/amazonlinux\nCOPY {script.name} /prep.py\n")
        dockerfile.flush()
        subprocess.run(
            f"docker build -f {dockerfile.name} -t {repository_uri} /tmp && docker push {repository_uri}",
            shell=True,
            check=True,
        )


def generate_data() -> str:
    """A very simple csv dataset with headers (called at parse, as in the system test)."""
    content = "class,x,y\n"
    for i in range(SAMPLE_SIZE):
        content += f"{i % 100},{i},{SAMPLE_SIZE - i}\n"
    return content


@task
def sys_test_context_task():
    """Stands in for SystemTestContextBuilder().add_variable(ROLE_ARN_KEY).build()."""
    return {ENV_ID_KEY: "bench", ROLE_ARN_KEY: "arn:aws:iam::123456789012:role/bench"}


@task
def set_up(env_id, role_arn):
    from airflow.sdk import get_current_context

    bucket_name = f"{env_id}-sagemaker-example"
    region = boto3.session.Session().region_name
    knn_image_uri = KNN_IMAGES_BY_REGION[region]
    repository_uri = _create_ecr_repository(f"{env_id}-repo")
    _build_and_upload_docker_image(
        PREPROCESS_SCRIPT_TEMPLATE.format(input_path="/opt/ml/processing/input", output_path="/opt/ml/out"),
        repository_uri,
    )
    ti = get_current_context()["ti"]
    for key, value in {
        "docker_image": repository_uri,
        "bucket_name": bucket_name,
        "raw_data_s3_key": f"{env_id}/preprocessing/input.csv",
        "ecr_repository_name": f"{env_id}-repo",
        "processing_config": {"ProcessingJobName": f"{env_id}-processing", "RoleArn": role_arn},
        "processing_job_name": f"{env_id}-processing",
        "input_data_uri": f"s3://{bucket_name}/{env_id}/preprocessing/input.csv",
        "output_data_uri": f"s3://{bucket_name}/{env_id}/results",
        "training_config": {"TrainingJobName": f"{env_id}-train", "RoleArn": role_arn},
        "training_job_name": f"{env_id}-train",
        "model_package_group_name": f"{env_id}-group",
        "auto_ml_job_name": f"{env_id}-automl",
        "experiment_name": f"{env_id}-experiment",
        "model_config": {"ModelName": f"{env_id}-KNN-model", "ExecutionRoleArn": role_arn},
        "model_name": f"{env_id}-KNN-model",
        "inference_code_image": knn_image_uri,
        "model_trained_weights": f"s3://{bucket_name}/{env_id}/results/model.tar.gz",
        "tuning_config": {"HyperParameterTuningJobName": f"{env_id}-tune"},
        "tuning_job_name": f"{env_id}-tune",
        "transform_config": {"TransformJobName": f"{env_id}-transform"},
        "transform_job_name": f"{env_id}-transform",
    }.items():
        ti.xcom_push(key=key, value=value)


@task(trigger_rule=TriggerRule.ALL_DONE)
def stop_automl_job(job_name: str):
    try:
        boto3.client("sagemaker").stop_auto_ml_job(AutoMLJobName=job_name)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ValidationException":
            raise


@task(trigger_rule=TriggerRule.ALL_DONE)
def delete_ecr_repository(repository_name):
    boto3.client("ecr").delete_repository(repositoryName=repository_name, force=True)


@task(trigger_rule=TriggerRule.ALL_DONE)
def delete_model_group(group_name, model_version_arn):
    client = boto3.client("sagemaker")
    client.delete_model_package(ModelPackageName=model_version_arn)
    client.delete_model_package_group(ModelPackageGroupName=group_name)


@task(trigger_rule=TriggerRule.ALL_DONE)
def delete_experiments(experiment_names):
    client = boto3.client("sagemaker")
    for experiment in experiment_names:
        client.delete_experiment(ExperimentName=experiment)


@task(trigger_rule=TriggerRule.ALL_DONE)
def delete_docker_image(image_name):
    subprocess.run(["docker", "rmi", image_name], check=False)


@task(trigger_rule=TriggerRule.ALL_DONE)
def prune_logs(logs):
    """Stands in for the system tests' prune_logs."""
    client = boto3.client("logs")
    for group, prefix in logs:
        streams = client.describe_log_streams(logGroupName=group, logStreamNamePrefix=prefix)["logStreams"]
        for stream in streams:
            client.delete_log_stream(logGroupName=group, logStreamName=stream["logStreamName"])


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
def watcher():
    """Stands in for tests_common's watcher: fails the run when any task failed."""
    raise RuntimeError("a task failed")


with DAG(
    dag_id=DAG_ID,
    schedule="@once",
    start_date=datetime(2021, 1, 1),
    tags=["example"],
    catchup=False,
) as dag:
    test_context = sys_test_context_task()
    env_id = test_context[ENV_ID_KEY]
    test_setup = set_up(env_id=env_id, role_arn=test_context[ROLE_ARN_KEY])

    create_bucket = S3CreateBucketOperator(task_id="create_bucket", bucket_name=test_setup["bucket_name"])
    upload_dataset = S3CreateObjectOperator(
        task_id="upload_dataset",
        s3_bucket=test_setup["bucket_name"],
        s3_key=test_setup["raw_data_s3_key"],
        data=generate_data(),
        replace=True,
    )
    automl = SageMakerAutoMLOperator(
        task_id="auto_ML",
        job_name=test_setup["auto_ml_job_name"],
        s3_input=test_setup["input_data_uri"],
        target_attribute="class",
        s3_output=test_setup["output_data_uri"],
        role_arn=test_context[ROLE_ARN_KEY],
        time_limit=30,
    )
    automl.wait_for_completion = False
    await_automl = SageMakerAutoMLSensor(job_name=test_setup["auto_ml_job_name"], task_id="await_auto_ML")
    await_automl.poke_interval = 10
    create_experiment = SageMakerCreateExperimentOperator(
        task_id="create_experiment", name=test_setup["experiment_name"]
    )
    preprocess_raw_data = SageMakerProcessingOperator(
        task_id="preprocess_raw_data", config=test_setup["processing_config"]
    )
    preprocess_raw_data.wait_for_completion = False
    await_preprocess = SageMakerProcessingSensor(
        task_id="await_preprocess", job_name=test_setup["processing_job_name"]
    )
    train_model = SageMakerTrainingOperator(task_id="train_model", config=test_setup["training_config"])
    train_model.wait_for_completion = False
    await_training = SageMakerTrainingSensor(
        task_id="await_training", job_name=test_setup["training_job_name"]
    )
    create_model = SageMakerModelOperator(task_id="create_model", config=test_setup["model_config"])
    register_model = SageMakerRegisterModelVersionOperator(
        task_id="register_model",
        image_uri=test_setup["inference_code_image"],
        model_url=test_setup["model_trained_weights"],
        package_group_name=test_setup["model_package_group_name"],
    )
    tune_model = SageMakerTuningOperator(task_id="tune_model", config=test_setup["tuning_config"])
    tune_model.wait_for_completion = False
    await_tuning = SageMakerTuningSensor(task_id="await_tuning", job_name=test_setup["tuning_job_name"])
    test_model = SageMakerTransformOperator(task_id="test_model", config=test_setup["transform_config"])
    test_model.wait_for_completion = False
    await_transform = SageMakerTransformSensor(
        task_id="await_transform", job_name=test_setup["transform_job_name"]
    )
    delete_model = SageMakerDeleteModelOperator(
        task_id="delete_model", config={"ModelName": test_setup["model_name"]}
    )
    delete_model.trigger_rule = TriggerRule.ALL_DONE
    delete_bucket = S3DeleteBucketOperator(
        task_id="delete_bucket",
        trigger_rule=TriggerRule.ALL_DONE,
        bucket_name=test_setup["bucket_name"],
        force_delete=True,
    )
    log_cleanup = prune_logs(
        [
            ("/aws/sagemaker/ProcessingJobs", env_id),
            ("/aws/sagemaker/TrainingJobs", env_id),
            ("/aws/sagemaker/TransformJobs", env_id),
        ]
    )

    chain(
        test_context,
        test_setup,
        create_bucket,
        upload_dataset,
        automl,
        await_automl,
        create_experiment,
        preprocess_raw_data,
        await_preprocess,
        train_model,
        await_training,
        create_model,
        register_model,
        tune_model,
        await_tuning,
        test_model,
        await_transform,
        delete_ecr_repository(test_setup["ecr_repository_name"]),
        delete_model_group(test_setup["model_package_group_name"], register_model.output),
        delete_model,
        delete_bucket,
        stop_automl_job(test_setup["auto_ml_job_name"]),
        delete_experiments(
            [
                test_setup["experiment_name"],
                f"{test_setup['auto_ml_job_name']}-aws-auto-ml-job",
                f"{test_setup['tuning_job_name']}-aws-tuning-job",
            ]
        ),
        delete_docker_image(test_setup["docker_image"]),
        log_cleanup,
    )

    list(dag.tasks) >> watcher()
