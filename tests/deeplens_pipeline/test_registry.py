"""The registry's pure parts: metadata SageMaker accepts, the class list read back, the gate's rule."""

from __future__ import annotations

import pytest

from deeplens_pipeline import registry
from emulator.extension.model_registry import metadata_problem


def _metadata(classes: list[str], **overrides) -> dict[str, str]:
    arguments = {
        "classes": classes,
        "base_network": "resnet-50",
        "image_shape": 300,
        "run_id": "manual__2026-11-26T07:00:00+00:00",
        "run_token": "0123456789",
        "training_job": "deeplens-train-0123456789",
        "holdout_map": 0.25,
        "per_class_ap": dict.fromkeys(classes, 0.5),
        **overrides,
    }
    return registry.version_metadata(**arguments)


@pytest.mark.parametrize(
    "classes",
    [
        ["blue_box", "yellow_box"],
        ["chat noir", "Äpfel", "数字"],  # letters of any script and spaces are admitted
        ["a,b", "c/d", '{"x"}', "e"],  # SageMaker refuses , " { }: encoded
        [f"class {i:02d} " + "x" * 90 for i in range(50)],  # the longest list the Params allow
    ],
)
def test_classes_round_trip_in_metadata_sagemaker_accepts(classes) -> None:
    metadata = _metadata(classes)
    assert metadata_problem(metadata, "customerMetadataProperties") is None
    model = registry.RegisteredModel("arn", 1, registry.APPROVED, "s3://b/m.tar.gz", "img", metadata)
    assert model.classes == classes
    assert model.holdout_map == 0.25


def test_readable_classes_stay_readable_and_ap_is_per_class_id() -> None:
    metadata = _metadata(["blue_box", "yellow_box"], per_class_ap={"blue_box": 0.75, "yellow_box": None})
    assert metadata[registry.META_CLASSES] == "blue_box/yellow_box"
    assert metadata["ap.0"] == "0.750000" and "ap.1" not in metadata
    assert metadata[registry.META_RUN_ID] == "manual__2026-11-26T07:00:00+00:00"


def test_a_run_id_with_refused_characters_is_cleaned() -> None:
    metadata = _metadata(["a"], run_id="my run (#3), retried")
    assert metadata_problem(metadata, "customerMetadataProperties") is None
    assert metadata[registry.META_RUN_ID] == "my run __3__ retried"


def test_the_client_token_is_what_sagemaker_accepts() -> None:
    token = registry.client_token("0123456789abcdef")
    assert len(token) <= 36 and token == registry.client_token("0123456789abcdef")
    assert all(c.isalnum() or c == "-" for c in token)
    assert token != registry.client_token("fedcba9876543210")


@pytest.mark.parametrize(
    ("candidate", "current", "deploy", "words"),
    [
        (0.50, None, True, "no current model"),
        (0.05, None, False, "below min_map 0.1000"),
        (0.50, 0.51, True, "reaches min_map"),  # within max_regression
        (0.50, 0.52, True, "reaches min_map"),  # exactly current - max_regression
        (0.50, 0.53, False, "minus max_regression 0.0200 (= 0.5100)"),
        (0.60, 0.40, True, "current model's 0.4000"),
    ],
)
def test_the_gate(candidate, current, deploy, words) -> None:
    decision = registry.decide_gate(candidate, current, min_map=0.1, max_regression=0.02)
    assert decision.deploy is deploy
    assert words in decision.reason
    assert decision.as_dict()["candidate_map"] == candidate


def test_who_changed_a_version() -> None:
    assert registry.who_changed({"LastModifiedBy": {"IamIdentity": {"Arn": "arn:aws:iam::1:user/ana"}}}) == (
        "arn:aws:iam::1:user/ana"
    )
    assert registry.who_changed({"LastModifiedBy": {"UserProfileName": "ana"}}) == "ana"
    assert registry.who_changed({}) == "someone"
