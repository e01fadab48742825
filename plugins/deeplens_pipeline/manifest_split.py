"""The train/validation split with a fixed holdout (no Airflow).

The validation set is the **holdout**: the images every run evaluates its model on. It stays fixed
across runs so that models are compared on the same images, and it never leaks into training:

- an image's place is decided by a seeded hash of the image itself (its pixels' SHA-256, recorded
  with its labels; its source-ref for labels older than that record), not by its rank among the
  others, so adding images never moves an image from one half to the other;
- an image is in the holdout when that hash, read as a number in [0, 1), is below
  ``validation_fraction``, or when an earlier run already put it there: the caller keeps the
  holdout's members (``manifests/holdout.list``) and passes them back, so the holdout only grows;
- the same photo under two names has one hash: both copies land in the same half.

A set so small that no image falls below the fraction borrows the image with the lowest hash for
the holdout (and, being recorded, it stays there).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from deeplens_pipeline.groundtruth import LabelledImage


class SplitError(ValueError):
    """The labelled set cannot be split into usable train and validation sets."""


@dataclass(frozen=True)
class Split:
    """The two halves, the images left out because they carry no box, and the holdout's members."""

    train: list[LabelledImage]
    validation: list[LabelledImage]
    dropped_empty: int
    holdout: frozenset[str] = field(default_factory=frozenset)
    """Identities of every holdout member, earlier ones included (what to record for the next run)."""
    new_in_holdout: int = 0
    """Images this split added to the holdout."""


def identity(image: LabelledImage) -> str:
    """What the holdout remembers an image by: its pixels' digest, else its source-ref."""
    return f"sha256:{image.digest}" if image.digest else f"ref:{image.source_ref}"


def _position(seed: int, key: str) -> float:
    """The image's seeded hash as a number in [0, 1): where it falls against the fraction."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:16], 16) / 2**64


def split_labels(
    images: Sequence[LabelledImage],
    validation_fraction: float = 0.2,
    seed: int = 0,
    keep_empty: bool = False,
    holdout: Iterable[str] = (),
) -> Split:
    """Split ``images`` into train and the fixed holdout (validation); see the module's docstring.

    ``holdout`` holds the identities earlier runs put in the holdout. Images without a box are
    dropped unless ``keep_empty`` (the built-in algorithm learns nothing from them and older
    versions reject them). Both halves need at least one image; a holdout member never trains.
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
    earlier = frozenset(holdout)
    members = set(earlier)
    for image in usable:
        if _position(seed, identity(image)) < validation_fraction:
            members.add(identity(image))
    if not any(identity(image) in members for image in usable):
        members.add(min((identity(image) for image in usable), key=lambda key: _position(seed, key)))
    validation = sorted((i for i in usable if identity(i) in members), key=lambda i: i.source_ref)
    train = sorted((i for i in usable if identity(i) not in members), key=lambda i: i.source_ref)
    if not train:
        raise SplitError(
            f"all {len(usable)} labelled image(s) with boxes are in the fixed holdout (validation), "
            "which never trains: label more photos"
        )
    return Split(
        train=train,
        validation=validation,
        dropped_empty=dropped,
        holdout=frozenset(members),
        new_in_holdout=len(members - earlier),
    )


def read_holdout(text: str) -> set[str]:
    """The holdout's members from ``manifests/holdout.list`` (one identity per line)."""
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def write_holdout(members: Iterable[str]) -> str:
    """``manifests/holdout.list``'s text: a header, then the members, sorted."""
    header = "# The fixed holdout (validation) set: images listed here never train. Only grows.\n"
    return header + "".join(f"{member}\n" for member in sorted(members))


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
