"""The emulator's training container: SageMaker's built-in object detection, on the CPU.

    python -m ml_tools.train --mode {fast,train} --train TRAIN.manifest --validation VAL.manifest \\
        --label-attribute NAME --hyperparameters HP.json --output OUT/model.tar.gz \\
        [--backbone {tiny,resnet-50,vgg-16}] [--max-seconds N] [--seed N] [--model MODEL.tar.gz]

fast: builds the real SSD training graph (base network from the hyperparameters unless
--backbone says otherwise) with initial weights, evaluates it once on the validation manifest
(an honest, near-zero mAP), writes model.tar.gz and says the model is untrained.
train: trains the SSD (the tiny base network unless --backbone says otherwise), evaluates every
epoch, keeps the epoch with the best validation mAP and writes it as model.tar.gz.
--model (incremental training, SageMaker's "model" channel): both modes start from that
model.tar.gz's weights instead of initial ones; its base_network and num_classes must be the job's
and its weights must fit the network built (else a customer error, exit status 2).

Logs go to stdout in the algorithm's style; every epoch prints
`#quality_metric: host=algo-1, epoch=E, validation mAP <score>=(0.1234)`. Hyperparameters this
emulation cannot honour are logged, one line each. Bad input ends the run with exit status 2 and
one line on stderr naming the file and line (or hyperparameter).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ml_tools.hyperparameters import HyperparameterError
from ml_tools.manifest import ManifestError

log = logging.getLogger("ml_tools.train")
BACKBONES = ("tiny", "resnet-50", "vgg-16")


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s %(levelname)s %(thread)d] %(message)s", datefmt="%m/%d/%Y %H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ml_tools.train", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("fast", "train"), required=True)
    parser.add_argument("--train", type=Path, required=True, help="train channel: augmented manifest")
    parser.add_argument(
        "--validation", type=Path, required=True, help="validation channel: augmented manifest"
    )
    parser.add_argument("--label-attribute", required=True, help="the labelling job's label attribute name")
    parser.add_argument("--hyperparameters", type=Path, required=True, help="hyperparameters JSON (strings)")
    parser.add_argument("--output", type=Path, required=True, help="where to write model.tar.gz")
    parser.add_argument("--backbone", choices=BACKBONES, default=None, help="base network actually built")
    parser.add_argument("--max-seconds", type=float, default=None, help="training time budget (train mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="incremental training: the model channel's model.tar.gz (its weights seed the job)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training container; returns the process exit status."""
    args = parse_args(argv)
    _setup_logging()
    from ml_tools.data import ImageError  # imports mxnet-free modules only

    try:
        from ml_tools.training_run import TrainingError, run

        run(args)
    except (ManifestError, HyperparameterError, ImageError, TrainingError) as exc:
        message = str(exc).replace("\n", " ")
        log.error("Customer Error: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
