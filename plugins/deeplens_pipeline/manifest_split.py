"""Reproducible train/validation split of an augmented manifest (no Airflow)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from deeplens_pipeline.groundtruth import LabelledImage


class SplitError(ValueError):
    """The labelled set cannot be split into usable train and validation sets."""


@dataclass(frozen=True)
class Split:
    """The two halves, and the images left out because they carry no box."""

    train: list[LabelledImage]
    validation: list[LabelledImage]
    dropped_empty: int


def _rank(seed: int, source_ref: str) -> str:
    return hashlib.sha256(f"{seed}:{source_ref}".encode()).hexdigest()


def split_labels(
    images: Sequence[LabelledImage],
    validation_fraction: float = 0.2,
    seed: int = 0,
    keep_empty: bool = False,
) -> Split:
    """Split by a seeded hash of each source-ref: the same labels and seed give the same split,
    whatever order the manifest lists them in.

    Images without a box are dropped unless ``keep_empty`` (the built-in algorithm learns
    nothing from them and older versions reject them). Both halves keep at least one image.
    """
    if not 0 < validation_fraction < 1:
        raise SplitError(f"params.validation_fraction: must be in (0, 1), got {validation_fraction}")
    usable = [image for image in images if keep_empty or image.boxes]
    dropped = len(images) - len(usable)
    if len(usable) < 2:
        raise SplitError(
            f"only {len(usable)} labelled image(s) with boxes ({dropped} without): training needs at "
            "least one image in each of train and validation"
        )
    ordered = sorted(usable, key=lambda image: _rank(seed, image.source_ref))
    n_validation = min(len(ordered) - 1, max(1, round(len(ordered) * validation_fraction)))
    validation = sorted(ordered[:n_validation], key=lambda image: image.source_ref)
    train = sorted(ordered[n_validation:], key=lambda image: image.source_ref)
    return Split(train=train, validation=validation, dropped_empty=dropped)


LABEL_HEADER_VALUES = 2
VALUES_PER_BOX = 5


def required_label_width(images: Sequence[LabelledImage]) -> int:
    """The least ``label_width`` the built-in algorithm accepts for ``images``.

    Each image's label is padded to ``label_width`` values: 2 of header and 5 per box, so the
    busiest image sets the minimum. Too small a width fails the job only once its instance runs.
    """
    busiest = max((len(image.boxes) for image in images), default=0)
    return LABEL_HEADER_VALUES + VALUES_PER_BOX * busiest


def check_label_width(split: Split, label_width: int) -> None:
    """Refuse a ``label_width`` too small for the split's busiest image, saying what it needs."""
    images = [*split.train, *split.validation]
    needed = required_label_width(images)
    if label_width < needed:
        busiest = max(images, key=lambda image: len(image.boxes))
        raise SplitError(
            f"params.label_width: {label_width} is too small: {busiest.source_ref} has "
            f"{len(busiest.boxes)} boxes, which needs label_width >= {needed} (2 + 5 per box); "
            f"the training job would fail after its instance started"
        )
