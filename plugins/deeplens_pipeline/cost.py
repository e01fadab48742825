"""What one run costs on AWS by the public price list (no Airflow, no AWS calls).

Assumptions, stated once:

- Region us-east-1 (N. Virginia), on-demand list prices in USD, no free tier, no Savings Plans,
  taxes or data transfer out. Another region is priced at these rates and the result says so.
- Prices are AWS's public pages' figures for us-east-1 (``PRICES_AS_OF``): Amazon SageMaker AI
  (training and batch transform per instance-hour, billed per second), Amazon S3 Standard, Amazon
  SQS standard queues, AWS Lambda (x86), AWS IoT Core messaging, SageMaker Ground Truth. They change:
  check https://aws.amazon.com/sagemaker/pricing/ (and the services' own pricing pages) before
  quoting.
- Training: ``BillableTimeInSeconds * InstanceCount`` at the instance type's on-demand rate, as the
  DescribeTrainingJob documentation gives it. With managed spot training, SageMaker already
  reports the shorter billable time (the saving is ``1 - Billable / TrainingTime``), so spot is
  priced by the same formula. A tuning run is the sum of its training jobs.
- Batch transform (the holdout evaluations): ``(TransformEndTime - TransformStartTime) *
  InstanceCount`` at the instance type's rate ("you are billed for the time interval between"
  those two, DescribeTransformJob documentation).
- S3: the requests a run makes (PUT/COPY/POST/LIST, GET) and one month of the bytes it adds.
- Left out as negligible, and listed in the result: SQS (the new-photo messages: $0.40 a million
  requests), Lambda (one function version publish, no invocation in the cloud: the function runs on
  the device under Greengrass), IoT Core messages (the deployment's and device watch's MQTT
  messages: $1.00 a million), the SageMaker model registry (no charge), CloudWatch Logs of the
  jobs (cents), the MWAA environment itself (a fixed hourly fee whatever the runs do).
  Each is still priced when its count is given.
- An instance type with no price here is listed with no cost and named in ``unpriced``; the total
  then covers the priced lines only (``complete`` is False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

PRICES_AS_OF = "2025 (AWS public pricing pages, us-east-1 on-demand)"
PRICED_REGION = "us-east-1"

TRAINING_PER_HOUR = {
    # GPU instances the built-in object-detection algorithm trains on.
    "ml.p2.xlarge": 1.125,
    "ml.p2.8xlarge": 9.00,
    "ml.p2.16xlarge": 14.40,
    "ml.p3.2xlarge": 3.825,
    "ml.p3.8xlarge": 14.688,
    "ml.p3.16xlarge": 28.152,
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g4dn.4xlarge": 1.505,
    "ml.g4dn.8xlarge": 2.72,
    "ml.g4dn.12xlarge": 4.89,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    # CPU instances (the emulator's and tests' small jobs).
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
}
"""SageMaker training, USD per instance-hour (us-east-1, on-demand)."""

TRANSFORM_PER_HOUR = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.large": 0.102,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
    "ml.p2.xlarge": 1.125,
    "ml.p3.2xlarge": 3.825,
    "ml.g4dn.xlarge": 0.736,
}
"""SageMaker batch transform, USD per instance-hour (us-east-1, on-demand)."""

S3_STANDARD_GB_MONTH = 0.023
S3_PUT_PER_1000 = 0.005
"""PUT, COPY, POST and LIST requests."""
S3_GET_PER_1000 = 0.0004
SQS_PER_MILLION = 0.40
"""Standard queue requests (each 64 KB chunk of a payload is one request)."""
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_PER_GB_SECOND = 0.0000166667
IOT_PER_MILLION_MESSAGES = 1.00
"""IoT Core messaging, metered in 5 KB increments (first billion messages a month)."""
GROUND_TRUTH_PER_OBJECT = 0.08
"""Ground Truth's fee per labelled object (first 50,000 a month), workforce not included."""

NEGLIGIBLE = (
    "SQS new-photo messages ($0.40 per million requests)",
    "Lambda: one version published, no cloud invocation (the function runs on the device)",
    "IoT Core MQTT messages of the deployment and device watch ($1.00 per million)",
    "SageMaker model registry (no charge)",
    "CloudWatch Logs of the SageMaker jobs (cents)",
    "the MWAA environment's own hourly fee (fixed, whatever the runs do)",
)


class CostError(ValueError):
    """A usage figure cannot be priced as given; the message names it."""


def _count(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CostError(f"{name} must be a number >= 0, not {value!r}")
    return float(value)


def _line(item: str, quantity: float, unit: str, unit_price: float | None, note: str = "") -> dict[str, Any]:
    cost = None if unit_price is None else round(quantity * unit_price, 6)
    return {
        "item": item,
        "quantity": round(quantity, 6),
        "unit": unit,
        "unit_price": unit_price,
        "cost": cost,
        "note": note,
    }


def training_usage(description: Mapping[str, Any]) -> dict[str, Any]:
    """The usage :func:`estimate_run_cost` prices, from a DescribeTrainingJob response."""
    resources = description.get("ResourceConfig") or {}
    return {
        "job": description.get("TrainingJobName"),
        "instance_type": resources.get("InstanceType"),
        "instance_count": resources.get("InstanceCount", 1),
        "billable_seconds": description.get("BillableTimeInSeconds"),
        "spot": bool(description.get("EnableManagedSpotTraining")),
    }


def transform_usage(description: Mapping[str, Any]) -> dict[str, Any]:
    """The usage :func:`estimate_run_cost` prices, from a DescribeTransformJob response."""
    resources = description.get("TransformResources") or {}
    start, end = description.get("TransformStartTime"), description.get("TransformEndTime")
    seconds = None
    if isinstance(start, datetime) and isinstance(end, datetime):
        seconds = max(0.0, (end - start).total_seconds())
    return {
        "job": description.get("TransformJobName"),
        "instance_type": resources.get("InstanceType"),
        "instance_count": resources.get("InstanceCount", 1),
        "seconds": seconds,
    }


def _instance_lines(
    kind: str, jobs: Sequence[Mapping[str, Any]], prices: Mapping[str, float], seconds_key: str
) -> tuple[list[dict[str, Any]], list[str]]:
    lines, unpriced = [], []
    for n, job in enumerate(jobs):
        name = job.get("job") or f"{kind} {n + 1}"
        instance_type = job.get("instance_type")
        count = _count(f"{name}: instance_count", job.get("instance_count", 1))
        seconds = job.get(seconds_key)
        if seconds is None:
            raise CostError(f"{name}: {seconds_key} is unknown (did the job finish?)")
        hours = _count(f"{name}: {seconds_key}", seconds) * count / 3600
        price = prices.get(str(instance_type))
        note = f"{count:g} * {instance_type}, {float(seconds):.0f} s"
        if job.get("spot"):
            note += " billable on spot capacity"
        if price is None:
            unpriced.append(str(instance_type))
            note += f"; no {kind} price for {instance_type} in this table"
        lines.append(_line(f"SageMaker {kind}: {name}", hours, "instance-hour", price, note))
    return lines, unpriced


def estimate_run_cost(
    *,
    training_jobs: Sequence[Mapping[str, Any]] = (),
    transform_jobs: Sequence[Mapping[str, Any]] = (),
    s3_put_requests: int = 0,
    s3_get_requests: int = 0,
    s3_added_bytes: int = 0,
    sqs_requests: int = 0,
    lambda_requests: int = 0,
    lambda_gb_seconds: float = 0.0,
    iot_messages: int = 0,
    ground_truth_objects: int = 0,
    region: str = PRICED_REGION,
) -> dict[str, Any]:
    """Price one run: a line per item and the total, in USD.

    ``training_jobs``: :func:`training_usage` dicts (``instance_type``, ``instance_count``,
    ``billable_seconds``, optional ``job`` and ``spot``), one per training job (several for a tuning
    run). ``transform_jobs``: :func:`transform_usage` dicts (``instance_type``, ``instance_count``,
    ``seconds``). The counts are this run's requests, bytes and messages; a zero count adds no line.

    Returns ``{"currency", "region", "prices_as_of", "lines": [{"item", "quantity", "unit",
    "unit_price", "cost", "note"}], "total", "complete", "unpriced", "negligible", "assumptions"}``.
    """
    lines, unpriced = [], []
    for kind, jobs, prices, key in (
        ("training", training_jobs, TRAINING_PER_HOUR, "billable_seconds"),
        ("batch transform", transform_jobs, TRANSFORM_PER_HOUR, "seconds"),
    ):
        more, missing = _instance_lines(kind, jobs, prices, key)
        lines += more
        unpriced += missing
    requests = (
        ("S3 PUT/COPY/POST/LIST requests", s3_put_requests, 1000, "1,000 requests", S3_PUT_PER_1000),
        ("S3 GET requests", s3_get_requests, 1000, "1,000 requests", S3_GET_PER_1000),
        ("S3 Standard storage added (one month)", s3_added_bytes, 1024**3, "GB-month", S3_STANDARD_GB_MONTH),
        ("SQS requests", sqs_requests, 1_000_000, "million requests", SQS_PER_MILLION),
        ("Lambda requests", lambda_requests, 1_000_000, "million requests", LAMBDA_PER_MILLION_REQUESTS),
        ("Lambda compute", lambda_gb_seconds, 1, "GB-second", LAMBDA_PER_GB_SECOND),
        ("IoT Core messages", iot_messages, 1_000_000, "million messages", IOT_PER_MILLION_MESSAGES),
        ("Ground Truth labelled objects", ground_truth_objects, 1, "object", GROUND_TRUTH_PER_OBJECT),
    )
    for item, value, per, unit, price in requests:
        quantity = _count(item, value) / per
        if quantity:
            lines.append(_line(item, quantity, unit, price))
    assumptions = [
        "on-demand list prices, no free tier, no Savings Plans, no tax or data transfer out",
        "training billed as BillableTimeInSeconds * InstanceCount (spot included)",
        "batch transform billed from TransformStartTime to TransformEndTime * InstanceCount",
    ]
    if region != PRICED_REGION:
        assumptions.append(f"priced at {PRICED_REGION} rates: {region}'s differ")
    return {
        "currency": "USD",
        "region": region,
        "prices_as_of": PRICES_AS_OF,
        "lines": lines,
        "total": round(sum(line["cost"] or 0.0 for line in lines), 4),
        "complete": not unpriced,
        "unpriced": sorted(set(unpriced)),
        "negligible": list(NEGLIGIBLE),
        "assumptions": assumptions,
    }


def format_cost(estimate: Mapping[str, Any]) -> str:
    """The estimate as aligned lines for a log or a summary."""
    rows = []
    for line in estimate["lines"]:
        cost = "     n/a" if line["cost"] is None else f"{line['cost']:8.4f}"
        rows.append(f"{line['item']:<48} {cost}  {line['note']}".rstrip())
    rows.append(f"{'Total (' + estimate['currency'] + ')':<48} {estimate['total']:8.4f}")
    if not estimate["complete"]:
        rows.append(f"Not priced: {', '.join(estimate['unpriced'])}")
    return "\n".join(rows)
