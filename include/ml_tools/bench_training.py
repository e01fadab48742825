"""Measure the emulator trainer against its target: validation mAP ≥ 0.5 on the sample dataset
within 5 minutes of CPU time (a measurement, not a test).

    PYTHONPATH=plugins:include .venv-ml/bin/python -m ml_tools.bench_training \\
        [--image-shape 300] [--max-seconds 240] [--n 60] [--seed 0]

Generates the sample dataset, letterboxes it to image_shape as the preprocess stage does, splits
it 80/20, runs `python -m ml_tools.train --mode train` with the seed's hyperparameters (resnet-50,
sgd, learning_rate 0.0005, mini_batch_size 16, epochs 50, lr_scheduler_step 5,10,25,40) and
prints the best validation mAP, when it first reached 0.5, the CPU time used, and the mAP of the
kept model on 100 fresh images (another seed) the trainer never saw.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator.sample_dataset import generate_sample_dataset
from ml_tools.artifact import read_model_archive
from ml_tools.data import load_dataset
from ml_tools.hyperparameters import parse_hyperparameters
from ml_tools.manifest import read_manifest
from ml_tools.sample_manifests import write_sample_manifests
from ml_tools.training_run import EVAL_BATCH, bind_module, evaluate

SEED_HYPERPARAMETERS = {
    "base_network": "resnet-50",
    "use_pretrained_model": "1",
    "label_width": "50",
    "optimizer": "sgd",
    "learning_rate": "0.0005",
    "mini_batch_size": "16",
    "epochs": "50",
    "lr_scheduler_step": "5,10,25,40",
}
MAP_LINE = re.compile(r"epoch=(\d+), validation mAP <score>=\(([0-9.]+)\)")


def archive_map(archive: Path, manifests: list[Path]) -> float:
    """Validation mAP (as the trainer measures it) of a trainer model.tar.gz on the images of `manifests`."""
    symbol, arg, aux, hyper = read_model_archive(archive)
    hp = parse_hyperparameters(hyper)
    samples = [s for m in manifests for s in read_manifest(m, "bb", hp.num_classes)]
    data = load_dataset(samples, hp.image_shape)
    most = max(len(b) for b in data.boxes)
    module = bind_module(symbol, EVAL_BATCH, hp.image_shape, most, for_training=False)
    module.set_params(arg, aux)
    return evaluate(module, data, hp, EVAL_BATCH, most)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        dataset = generate_sample_dataset(root / "dataset", args.n, seed=args.seed)
        train, validation, classes = write_sample_manifests(dataset, root / "m", letterbox=args.image_shape)
        hp = {
            **SEED_HYPERPARAMETERS,
            "num_classes": str(len(classes)),
            "num_training_samples": str(len(train.read_text().splitlines())),
            "image_shape": str(args.image_shape),
        }
        (root / "hp.json").write_text(json.dumps(hp))
        command = [
            sys.executable, "-m", "ml_tools.train", "--mode", "train",
            "--train", str(train), "--validation", str(validation), "--label-attribute", "bb",
            "--hyperparameters", str(root / "hp.json"), "--output", str(root / "out" / "model.tar.gz"),
            "--max-seconds", str(args.max_seconds), "--seed", str(args.seed),
        ]  # fmt: skip
        started = time.monotonic()
        log = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        wall = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        scores = [(int(e), float(s)) for e, s in MAP_LINE.findall(log)]
        best_epoch, best = max(scores, key=lambda t: t[1])
        first = next((e for e, s in scores if s >= 0.5), None)
        held_out = generate_sample_dataset(root / "held_out", 100, seed=args.seed + 1000)
        ho_train, ho_val, _ = write_sample_manifests(held_out, root / "ho", letterbox=args.image_shape)
        fresh = archive_map(root / "out" / "model.tar.gz", [ho_train, ho_val])
    print(
        f"sample dataset: {args.n} images, image_shape {args.image_shape}, tiny network, seed hyperparameters"
    )
    print(f"epochs run: {len(scores)}; best validation mAP {best:.4f} at epoch {best_epoch}")
    print(f"first validation mAP >= 0.5 at epoch: {first}")
    print(f"trainer CPU time {usage.ru_utime + usage.ru_stime:.0f} s (user+sys), wall {wall:.0f} s")
    print(f"kept model on 100 fresh images (seed {args.seed + 1000}): mAP {fresh:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
