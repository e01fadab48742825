"""Split the accumulated labels into this run's train manifest and the fixed holdout (validation)."""

from __future__ import annotations

from typing import Any

from deeplens_pipeline import groundtruth as gt
from deeplens_pipeline.airflow_compat import AirflowFailException
from deeplens_pipeline.manifest_split import (
    SplitError,
    check_label_width,
    read_holdout,
    required_label_width,
    split_labels,
    write_holdout,
)
from deeplens_pipeline.operators.base import PipelineOperator, run_config, run_scope
from deeplens_pipeline.operators.labeling import read_labels


class SplitManifestOperator(PipelineOperator):
    """Write ``train.manifest`` and ``validation.manifest`` for this run: validation is the fixed
    holdout (``manifests/holdout.list``, which only grows), so every run's model is evaluated on the
    same images and no holdout image ever trains.

    Returns their URIs and counts; the training stage takes num_training_samples from it.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        layout = self.layout(config)
        s3 = self.s3(config)
        labels = read_labels(s3, layout, layout.labels_key, config)
        earlier = (
            read_holdout(s3.read_key(layout.holdout_key, layout.bucket))
            if s3.check_for_key(layout.holdout_key, layout.bucket)
            else set()
        )
        try:
            split = split_labels(labels, config["validation_fraction"], config["split_seed"], holdout=earlier)
            check_label_width(split, config["label_width"])
        except SplitError as err:
            raise AirflowFailException(f"{layout.uri(layout.labels_key)}: {err}") from None  # final: no retry
        train_key, validation_key = layout.split_keys(run_scope(context).token)
        for key, part in ((train_key, split.train), (validation_key, split.validation)):
            body = "".join(i.to_line(config["label_attribute"], config["classes"]) + "\n" for i in part)
            s3.load_string(body, key, layout.bucket, replace=True)
        if split.holdout != earlier:  # a retry reads it back and makes the same split
            s3.load_string(write_holdout(split.holdout), layout.holdout_key, layout.bucket, replace=True)
        result = {
            "train_uri": layout.uri(train_key),
            "validation_uri": layout.uri(validation_key),
            "train_count": len(split.train),
            "validation_count": len(split.validation),
            "dropped_empty": split.dropped_empty,
            "holdout_new": split.new_in_holdout,
            "holdout_uri": layout.uri(layout.holdout_key),
            "label_width_needed": required_label_width([*split.train, *split.validation]),
            "train_boxes": gt.summarise(split.train, config["classes"]).as_dict()["boxes"],
            "validation_boxes": gt.summarise(split.validation, config["classes"]).as_dict()["boxes"],
        }
        self.log.info(
            "Split: %d train, %d validation (the fixed holdout, %d new in it), %d without boxes left out",
            result["train_count"],
            result["validation_count"],
            split.new_in_holdout,
            split.dropped_empty,
        )
        return result
