"""What a run costs by the public price list: a line per item, the total, unknown types named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deeplens_pipeline import cost
from deeplens_pipeline.cost import CostError, estimate_run_cost, format_cost, training_usage, transform_usage

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _training(**overrides) -> dict:
    """A DescribeTrainingJob response's billing fields (spot: billed 720 of 1800 s)."""
    return {
        "TrainingJobName": "deeplens-train-x",
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "TrainingTimeInSeconds": 1800,
        "BillableTimeInSeconds": 720,
        "EnableManagedSpotTraining": True,
        **overrides,
    }


def _transform(name: str, seconds: int, instance_type: str = "ml.m5.xlarge") -> dict:
    return {
        "TransformJobName": name,
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": 1},
        "TransformStartTime": START,
        "TransformEndTime": START + timedelta(seconds=seconds),
    }


def test_a_run_is_priced_line_by_line() -> None:
    estimate = estimate_run_cost(
        training_jobs=[training_usage(_training())],
        transform_jobs=[
            transform_usage(_transform("eval-candidate", 360)),
            transform_usage(_transform("eval-current", 540)),
        ],
        s3_put_requests=2000,
        s3_get_requests=5000,
        s3_added_bytes=2 * 1024**3,
    )
    by_item = {line["item"]: line for line in estimate["lines"]}
    train = by_item["SageMaker training: deeplens-train-x"]
    # 720 billable seconds (spot) at ml.p3.2xlarge's $3.825 an hour.
    assert train["quantity"] == pytest.approx(0.2) and train["cost"] == pytest.approx(0.765)
    assert "spot" in train["note"]
    assert by_item["SageMaker batch transform: eval-candidate"]["cost"] == pytest.approx(0.1 * 0.23)
    assert by_item["SageMaker batch transform: eval-current"]["cost"] == pytest.approx(0.15 * 0.23)
    assert by_item["S3 PUT/COPY/POST/LIST requests"]["cost"] == pytest.approx(0.01)
    assert by_item["S3 GET requests"]["cost"] == pytest.approx(0.002)
    assert by_item["S3 Standard storage added (one month)"]["cost"] == pytest.approx(0.046)
    assert "SQS requests" not in by_item  # no count given: no line, listed as negligible instead
    assert estimate["total"] == pytest.approx(0.765 + 0.023 + 0.0345 + 0.01 + 0.002 + 0.046, abs=1e-4)
    assert estimate["complete"] and estimate["unpriced"] == []
    assert estimate["currency"] == "USD" and estimate["region"] == "us-east-1"
    assert any("SQS" in item for item in estimate["negligible"])
    text = format_cost(estimate)
    assert "Total (USD)" in text and "0.7650" in text


def test_several_instances_and_a_tuning_run_add_up() -> None:
    jobs = [
        training_usage(
            _training(
                TrainingJobName=f"t{n}",
                ResourceConfig={"InstanceType": "ml.p3.2xlarge", "InstanceCount": 2},
                BillableTimeInSeconds=1800,
                EnableManagedSpotTraining=False,
            )
        )
        for n in range(3)
    ]
    estimate = estimate_run_cost(training_jobs=jobs)
    # 3 jobs * 2 instances * half an hour * $3.825.
    assert estimate["total"] == pytest.approx(3 * 2 * 0.5 * 3.825)
    assert all("spot" not in line["note"] for line in estimate["lines"])


def test_an_unknown_instance_type_is_named_not_guessed() -> None:
    estimate = estimate_run_cost(
        training_jobs=[
            training_usage(_training(ResourceConfig={"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1}))
        ],
        transform_jobs=[transform_usage(_transform("e", 60))],
    )
    (train,) = [line for line in estimate["lines"] if "training" in line["item"]]
    assert train["cost"] is None and "no training price for ml.p5.48xlarge" in train["note"]
    assert estimate["unpriced"] == ["ml.p5.48xlarge"] and not estimate["complete"]
    assert estimate["total"] == pytest.approx(60 / 3600 * 0.23, abs=1e-4)
    assert "Not priced: ml.p5.48xlarge" in format_cost(estimate)


def test_other_regions_are_priced_at_us_east_1_rates_and_say_so() -> None:
    estimate = estimate_run_cost(iot_messages=2_000_000, sqs_requests=10, region="eu-west-1")
    assert any("eu-west-1" in a for a in estimate["assumptions"])
    by_item = {line["item"]: line["cost"] for line in estimate["lines"]}
    assert by_item["IoT Core messages"] == pytest.approx(2.0)
    assert by_item["SQS requests"] == pytest.approx(10 / 1e6 * 0.40)


def test_bad_usage_is_refused_naming_it() -> None:
    unfinished = transform_usage({**_transform("eval-x", 1), "TransformEndTime": None})
    with pytest.raises(CostError, match="eval-x: seconds is unknown"):
        estimate_run_cost(transform_jobs=[unfinished])
    with pytest.raises(CostError, match="S3 GET requests must be a number >= 0"):
        estimate_run_cost(s3_get_requests=-1)
    with pytest.raises(CostError, match="billable_seconds is unknown"):
        estimate_run_cost(training_jobs=[training_usage(_training(BillableTimeInSeconds=None))])


def test_the_price_tables_cover_the_pipeline_defaults() -> None:
    from deeplens_pipeline.operators.evaluation import DEFAULT_INSTANCE_TYPE
    from deeplens_pipeline.params import PARAM_SPECS

    assert PARAM_SPECS["instance_type"].default in cost.TRAINING_PER_HOUR
    assert DEFAULT_INSTANCE_TYPE in cost.TRANSFORM_PER_HOUR
