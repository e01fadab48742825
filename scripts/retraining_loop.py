"""The retraining loop, end to end, under a local Airflow's own scheduler and triggerer, on the emulator.

    .venv/bin/python scripts/retraining_loop.py [--candidate better|worse] [--photos 40]
        [--labeling label-studio|ground-truth] [--require-approval] [--work-dir .retraining-loop]
        [--json FILE]

What a team that already runs a model sees when new photos land:

1. The device's model is in the registry: the sample model (the pipeline's own trainer, 120 epochs
   on the sample dataset; ``emulator.sample_model``) is registered as version 1 of this
   environment's model package group and Approved, with the same requests the pipeline sends.
2. The setup command connects the bucket's ``incoming/`` prefix to an SQS queue; Airflow's four
   services start with ``DEEPLENS_NEW_PHOTOS_QUEUE_URL`` (the DAG's asset watcher) and
   ``DEEPLENS_RUN_DEFAULTS`` (the Params of a run nobody triggers).
3. ``--photos`` new photos (another seed than the model's) are uploaded with boto3. A run starts by
   itself: the photos are prepared and labelled (Label Studio with the current model's boxes
   pre-drawn, corrected by the simulated annotator; or the emulated Ground Truth), the model is
   trained (``better``: warm-started from version 1 for a few epochs; ``worse``: no warm start, an
   untrained network), both models are scored on the fixed holdout by batch transform jobs,
   the gate decides, the device gets the new model only if it passed, and the report is written.
   With ``--require-approval``, ``approve_model`` waits in the triggerer until the script, once it
   sees the task deferred, approves the version as a person would with the CLI.
4. The JSON records the tasks' states, the summary, the registry's versions, the device's
   deployments before and after, the report's files and the loop's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include"), str(ROOT / "scripts")]

import local_airflow as la  # noqa: E402

PHOTO_SEED = 101
"""The new photos' seed: other photos than the ones the sample model was trained on (seed 11)."""
CANDIDATES = {
    # Warm-started from the current model: a few epochs at the fine-tuning rate on the new photos.
    "better": {"warm_start": True, "epochs": 10},
    # Deliberately worse: no warm start and an untrained network (see TRAINING).
    "worse": {"warm_start": False, "epochs": 1},
}
TRAINING = {"better": "train", "worse": "fast"}
"""The emulator's training mode per candidate. The emulator's tiny network stands for a pretrained
backbone and trains from scratch for at least 200 epochs whatever the job asks (within its time
budget), so "one epoch" would not make a worse model there: the worse candidate is the network's
initial weights (``fast``: a real SSD graph, untrained), as a training job gone wrong would give."""
GATE = {"min_map": 0.5, "max_regression": 0.02}
"""The gate of these runs: the default max_regression, and a floor a useful detector clears."""


def register_current_model(
    endpoint_url: str, bucket: str, archive: Path, classes: list[str], image_shape: int
) -> dict[str, Any]:
    """Version 1 of this environment's group: the sample model, Approved (what the device runs)."""
    import boto3

    from deeplens_pipeline import registry
    from deeplens_pipeline.training import object_detection_image

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=la.REGION)
    sagemaker = boto3.client("sagemaker", endpoint_url=endpoint_url, region_name=la.REGION)
    key = "output/seed/sample-model/model.tar.gz"
    s3.upload_file(str(archive), bucket, key)
    metrics_key = "evaluation/seed/current.json"
    s3.put_object(
        Bucket=bucket, Key=metrics_key, Body=b'{"note": "the model the device runs before the loop"}'
    )
    group = registry.group_name(la.ENVIRONMENT_ID, la.DAG_ID)
    registry.ensure_group(sagemaker, group, "DeepLens object detection models (retraining loop)")
    metadata = registry.version_metadata(
        classes=classes,
        base_network="resnet-50",
        image_shape=image_shape,
        run_id="seed",
        run_token="seed",
        training_job="sample-model",
        holdout_map=0.0,
        per_class_ap={},
    )
    request = registry.register_request(
        group=group,
        image=object_detection_image(la.REGION),
        model_artifact=f"s3://{bucket}/{key}",
        metrics_uri=f"s3://{bucket}/{metrics_key}",
        metadata=metadata,
        token=registry.client_token("seed"),
        description="The model the device runs before the loop (sample model)",
    )
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    sagemaker.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus=registry.APPROVED, ApprovalDescription="the device's model"
    )
    return {"group": group, "arn": arn}


def registry_versions(endpoint_url: str, group: str) -> list[dict[str, Any]]:
    """Every version of ``group``: number, status, approval description and artefact."""
    import boto3

    from deeplens_pipeline import registry

    sagemaker = boto3.client("sagemaker", endpoint_url=endpoint_url, region_name=la.REGION)
    summaries = sagemaker.list_model_packages(ModelPackageGroupName=group, MaxResults=100)
    versions = []
    for summary in summaries["ModelPackageSummaryList"]:
        model = registry.registered_model(
            sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        )
        versions.append(
            {
                "version": model.version,
                "status": model.status,
                "approval_description": model.approval_description,
                "model_artifact": model.model_artifact,
                "holdout_map": model.holdout_map,
            }
        )
    return sorted(versions, key=lambda v: v["version"])


class PersonApproving:
    """With ``require_approval``: once ``approve_model`` waits in the triggerer, approve the pending
    version as a person would with the CLI (``aws sagemaker update-model-package``)."""

    def __init__(self, endpoint_url: str, group: str) -> None:
        self.endpoint_url = endpoint_url
        self.group = group
        self.approved: dict[str, Any] = {}
        self.seen_waiting = False

    def __call__(self, tasks: dict[str, dict[str, Any]]) -> None:
        if tasks.get("approve_model", {}).get("state") != "deferred" or self.approved:
            return
        import boto3

        self.seen_waiting = True
        sagemaker = boto3.client("sagemaker", endpoint_url=self.endpoint_url, region_name=la.REGION)
        pending = sagemaker.list_model_packages(
            ModelPackageGroupName=self.group, ModelApprovalStatus="PendingManualApproval"
        )["ModelPackageSummaryList"]
        if len(pending) != 1:
            raise la.AirflowStackError(f"approve_model waits, but {len(pending)} versions are pending")
        arn = pending[0]["ModelPackageArn"]
        time.sleep(5)  # a person reads the report first; the trigger polls meanwhile
        sagemaker.update_model_package(
            ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="checked the report"
        )
        self.approved = {"arn": arn, "at": time.monotonic()}
        print(f"Approved {arn} as a person would (update-model-package)", flush=True)


def device_deployments(endpoint_url: str, thing_name: str) -> list[dict[str, Any]]:
    """The Greengrass V2 deployments that target the device, with their component versions."""
    import boto3

    client = boto3.client("greengrassv2", endpoint_url=endpoint_url, region_name=la.REGION)
    iot = boto3.client("iot", endpoint_url=endpoint_url, region_name=la.REGION)
    thing_arn = iot.describe_thing(thingName=thing_name)["thingArn"]
    found = []
    for deployment in client.list_deployments(targetArn=thing_arn, historyFilter="ALL").get(
        "deployments", []
    ):
        detail = client.get_deployment(deploymentId=deployment["deploymentId"])
        found.append(
            {
                "id": deployment["deploymentId"],
                "status": deployment.get("deploymentStatus"),
                "components": {
                    name: c.get("componentVersion") for name, c in detail.get("components", {}).items()
                },
            }
        )
    return found


def report_files(endpoint_url: str, bucket: str) -> list[str]:
    """The keys the runs' evaluation reports wrote."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=la.REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="reports/")
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def loop(args: argparse.Namespace) -> int:
    """Seed, set up, upload, follow the run the photos start; the outcome as a dict (and JSON)."""
    from deeplens_pipeline.new_photos import QUEUE_URL_ENV
    from deeplens_pipeline.params import RUN_DEFAULTS_ENV
    from emulator.demo import fresh_work_dir, run_conf, start_emulator
    from emulator.local_airflow import LocalAirflow, free_port
    from emulator.sample_dataset import generate_sample_dataset
    from emulator.sample_model import CLASSES, DEPLOYABLE_RECIPE, trained_sample_model
    from emulator.seed import seed_demo_account

    started = time.monotonic()
    work = fresh_work_dir(args.work_dir)
    model = trained_sample_model(recipe=DEPLOYABLE_RECIPE)
    dataset = generate_sample_dataset(
        work / "dataset", n_images=args.photos, classes=CLASSES, seed=PHOTO_SEED
    )
    classes = list(CLASSES)
    photos = sorted((dataset / "images").iterdir())
    emulator, url = start_emulator(work, la.emulator_environment(work, dataset, TRAINING[args.candidate]))
    stack = LocalAirflow(work / "airflow", work / "logs", free_port(), paused_at_creation=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack.env["DEEPLENS_ENVIRONMENT"] = la.ENVIRONMENT_ID
    stack.env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] = "120"
    labelling = contextlib.ExitStack()
    result: dict[str, Any] = {"candidate": args.candidate, "labeling": args.labeling, "photos": args.photos}
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="emulator", AWS_SECRET_ACCESS_KEY="emulator")
        account = seed_demo_account(url, region=la.REGION)
        seeded = register_current_model(url, account.bucket, model.archive, classes, model.image_shape)
        print(f"Registered the device's model as {seeded['arn']} (Approved)")
        queue_url = la.set_up_notifications(url, account.bucket)
        source = f"s3://{account.bucket}/{la.INCOMING}"
        defaults = {
            **run_conf(account, source, "train", classes, args.labeling),
            "poll_seconds": la.POLL_SECONDS,
            "image_shape": model.image_shape,
            "base_network": "resnet-50",
            "mini_batch_size": 8,
            "learning_rate": 0.002,
            "optimizer": "rmsprop",
            "lr_scheduler_step": "",
            **CANDIDATES[args.candidate],
            **GATE,
            "require_approval": args.require_approval,
        }
        connections = {la.CONN_ID: la.aws_connection(url)}
        if args.labeling == "label-studio":
            connections[la.LABEL_STUDIO_CONN_ID] = la.label_studio_connection(
                labelling, work, url, dataset, account.bucket
            )
        stack.env[QUEUE_URL_ENV] = queue_url
        stack.env[RUN_DEFAULTS_ENV] = json.dumps(defaults)
        la.start_airflow(stack, connections, args.timeout)
        result["deployments_before"] = device_deployments(url, account.thing_name)
        known = {run["dag_run_id"] for run in stack.runs()}
        loop_started = time.monotonic()
        la.upload_photos(url, account.bucket, photos)
        print(f"Uploaded {len(photos)} new photos to {source}; waiting for a run to start by itself")
        run = stack.wait_for("a run started by new photos", lambda: stack.new_run(known), args.timeout)
        person = PersonApproving(url, seeded["group"]) if args.require_approval else None
        record = la.follow_run(stack, run["dag_run_id"], args.timeout, person)
        result["loop_seconds"] = round(time.monotonic() - loop_started, 1)
        if person is not None:
            approved = person.approved.get("arn")
            result["person_approved"] = {"seen_waiting": person.seen_waiting, "arn": approved}
            result["approval"] = stack.xcom(run["dag_run_id"], "approve_model", key="approval")
        result["run"] = record
        result["gate"] = stack.xcom(run["dag_run_id"], "gate", key="decision")
        result["registry"] = registry_versions(url, seeded["group"])
        result["deployments_after"] = device_deployments(url, account.thing_name)
        result["report_files"] = report_files(url, account.bucket)
        result["state"] = record["state"]
        print(f"\nGate: {result['gate']}")
        print(f"Registry: {json.dumps(result['registry'], indent=1)}")
        print(f"Loop: {result['loop_seconds']} s from upload to the run's end")
    except la.AirflowStackError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        result["error"] = str(err)
        result["state"] = "failed"
    finally:
        stack.stop()
        labelling.close()
        emulator.terminate()
        emulator.wait(timeout=30)
    result["logs"] = str(stack.logs)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"Wall time: {result['wall_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result.get("state") == "success" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), default="better")
    parser.add_argument("--photos", type=int, default=40, help="new photos uploaded at once")
    parser.add_argument("--labeling", choices=["label-studio", "ground-truth"], default="label-studio")
    parser.add_argument(
        "--require-approval",
        action="store_true",
        help="the run waits for a person's approval; the script approves once approve_model waits",
    )
    parser.add_argument("--work-dir", type=Path, default=ROOT / ".retraining-loop")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds for each wait")
    parser.add_argument("--json", type=Path, help="also write the outcome as JSON here")
    return loop(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
