"""One run of the emulator's training container (see ml_tools.train for the command line)."""

from __future__ import annotations

import argparse
import copy
import logging
import math
import random
import re
import time
from pathlib import Path

import mxnet as mx
import numpy as np

from ml_tools.artifact import read_model_archive, write_model_archive
from ml_tools.data import Dataset, batches, load_dataset
from ml_tools.evaluate import mean_average_precision
from ml_tools.hyperparameters import Hyperparameters, load_hyperparameters
from ml_tools.manifest import ManifestError, Sample, read_manifest
from ml_tools.ssd_graph import build_training_graph

log = logging.getLogger("ml_tools.train")


class TrainingError(ValueError):
    """Training could not produce a model (e.g. no epoch fitted in the time budget)."""


class ModelChannelError(TrainingError):
    """The model channel's model cannot seed this job (incremental training)."""


# Hyperparameters that define the network: an incremental training job's must equal those of the
# model in its model channel (SageMaker Developer Guide, Object Detection - MXNet, Incremental Training).
ARCHITECTURE_HYPERPARAMETERS = ("base_network", "num_classes")
# A warm-started tiny network fine-tunes: a tenth of its from-scratch learning rate, the job's epochs.
TINY_WARM_LR_FACTOR = 0.1


def load_seed_model(path: Path, hp: Hyperparameters) -> tuple[dict, dict]:
    """(arg_params, aux_params) of the model channel's model.tar.gz, refused (ModelChannelError)
    when its base_network or num_classes differ from the job's."""
    try:
        _, arg_params, aux_params, hyper = read_model_archive(path)
    except Exception as exc:  # a corrupt or foreign archive
        raise ModelChannelError(
            f"the model channel's {Path(path).name} is not a model.tar.gz output by SageMaker's "
            f"object detection algorithm ({exc})"
        ) from None
    for name in ARCHITECTURE_HYPERPARAMETERS:
        theirs, ours = str(hyper.get(name, "")), hp.raw[name]
        if theirs != ours:
            raise ModelChannelError(
                f"incremental training needs the same {name} as the model in the model channel: "
                f"the model has {name}={theirs or '(none)'}, this job {name}={ours}"
            )
    return arg_params, aux_params


def seed_module(module: mx.mod.Module, arg_params: dict, aux_params: dict) -> None:
    """Give ``module`` the seed model's weights; refuse weights that do not fit its network."""
    own_arg, own_aux = module.get_params()
    wrong = [
        name
        for own, given in ((own_arg, arg_params), (own_aux, aux_params))
        for name in sorted(set(own) | set(given))
        if name not in own or name not in given or own[name].shape != given[name].shape
    ]
    if wrong:
        raise ModelChannelError(
            f"the model channel's weights do not fit this job's network ({len(wrong)} parameters "
            f"differ, e.g. {wrong[:3]}): was it built with another base network?"
        )
    module.set_params(arg_params, aux_params, allow_missing=False, force_init=True)


HOST = "algo-1"
EVAL_BATCH = 4


def _quality(epoch: int, what: str, value: float) -> None:
    print(f"#quality_metric: host={HOST}, epoch={epoch}, {what}=({value:.4f})", flush=True)


def _check_label_width(samples: list[Sample], hp: Hyperparameters) -> int:
    """Largest object count in the data; refuses lines with more objects than label_width allows."""
    most = 0
    for s in samples:
        if len(s.boxes) > hp.max_objects:
            raise ManifestError(
                f"{s.where}: {len(s.boxes)} objects, more than label_width={hp.label_width} allows "
                f"({hp.max_objects} objects: 2 header values + 5 per object); raise label_width"
            )
        most = max(most, len(s.boxes))
    return most


# The tiny network trains from scratch (there are no pretrained weights for it), which needs a
# higher learning rate and many more passes than fine-tuning a pretrained base network does.
# Its recipe keeps the job's optimizer and scales the job's learning_rate relative to the
# algorithm's default (0.001), so tuning learning_rate still means something.
TINY_BASE_LR = {"sgd": 0.04, "adam": 0.002, "rmsprop": 0.002, "adadelta": 1.0}
TINY_MIN_EPOCHS = 200
TINY_WARMUP_EPOCHS = 3
DEFAULT_LR = 0.001


class BudgetCosineScheduler(mx.lr_scheduler.LRScheduler):
    """Linear warm-up, then cosine decay to 1 % over the run, the run's length being whichever comes
    first of `total_updates` and `budget_seconds` (measured from `started`)."""

    def __init__(
        self, base_lr: float, total_updates: int, warmup_updates: int, budget_seconds, started: float
    ):
        super().__init__(base_lr=base_lr)
        self.total_updates = max(1, total_updates)
        self.warmup = max(1, warmup_updates)
        self.budget = budget_seconds
        self.started = started

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup:
            return self.base_lr * (0.1 + 0.9 * num_update / self.warmup)
        progress = num_update / self.total_updates
        if self.budget:
            progress = max(progress, (time.monotonic() - self.started) / self.budget)
        progress = min(1.0, progress)
        return self.base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def hyperparameter_notes(hp: Hyperparameters, backbone: str, mode: str, warm: bool = False) -> list[str]:
    """One line per hyperparameter this emulation cannot honour as SageMaker would."""
    notes = [f"hyperparameter {k} is not one of the algorithm's; ignored" for k in hp.unknown]
    if backbone != hp.base_network:
        notes.append(
            f"base_network={hp.base_network}: the emulator builds the {backbone} base network instead "
            "(small enough for the CPU); the SSD head, node names and outputs are the algorithm's"
        )
    if hp.use_pretrained_model and not warm:
        notes.append(
            "use_pretrained_model=1: no pretrained ImageNet weights are available offline; the base "
            "network starts from random (Xavier) weights"
        )
    if hp.kv_store != "device" or hp.raw["_kvstore"] != "device":
        notes.append(f"kv_store={hp.kv_store}: one CPU process, no key-value store; no effect")
    if mode == "fast":
        notes.append(
            "fast mode: no training; epochs, learning_rate, optimizer, momentum, weight_decay, "
            "lr_scheduler_*, mini_batch_size, early_stopping* and freeze_layer_pattern are not used"
        )
    elif hp.optimizer != "sgd":
        notes.append(f"momentum={hp.momentum}: only the sgd optimizer uses it; not used by {hp.optimizer}")
    return notes


def learning_plan(
    hp: Hyperparameters, backbone: str, batches_per_epoch: int, budget, started: float, warm: bool = False
):
    """(epochs, optimizer params, notes on what is not honoured) for this backbone; ``warm``: the
    weights come from the model channel (the tiny network then fine-tunes instead of learning
    from scratch)."""
    params: dict = {"wd": hp.weight_decay, "rescale_grad": 1.0}
    if hp.optimizer == "sgd":
        params["momentum"] = hp.momentum
    if backbone != "tiny":
        params["learning_rate"] = hp.learning_rate
        if hp.lr_scheduler_step:
            params["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(
                step=[max(1, s * batches_per_epoch) for s in hp.lr_scheduler_step],
                factor=hp.lr_scheduler_factor,
                base_lr=hp.learning_rate,
            )
        return hp.epochs, params, []
    factor = TINY_WARM_LR_FACTOR if warm else 1.0
    lr = TINY_BASE_LR[hp.optimizer] * hp.learning_rate / DEFAULT_LR * factor
    epochs = hp.epochs if warm else max(hp.epochs, TINY_MIN_EPOCHS)
    warmup = 0 if warm else TINY_WARMUP_EPOCHS * batches_per_epoch
    params["learning_rate"] = lr
    params["lr_scheduler"] = BudgetCosineScheduler(lr, epochs * batches_per_epoch, warmup, budget, started)
    how = "fine-tunes the model channel's weights" if warm else "trains from scratch"
    notes = [
        f"lr_scheduler_step={hp.raw['lr_scheduler_step'] or '(none)'}, lr_scheduler_factor="
        f"{hp.raw['lr_scheduler_factor']}: replaced by "
        + ("cosine decay over the run (fine-tuning)" if warm else "warm-up and cosine decay over the run")
        + ("" if warm else " (from scratch)")
    ]
    if hp.optimizer != "adadelta":  # MXNet's adadelta has no learning rate (noted by the caller)
        notes.append(
            f"learning_rate={hp.raw['learning_rate']}: the tiny network {how}; {hp.optimizer} "
            f"uses {lr:g} (= {TINY_BASE_LR[hp.optimizer] * factor:g} x learning_rate / {DEFAULT_LR:g})"
        )
    if epochs != hp.epochs:
        notes.append(
            f"epochs={hp.epochs}: the tiny network needs more passes from scratch; runs up to {epochs}"
        )
    return epochs, params, notes


def evaluate(
    module: mx.mod.Module, data: Dataset, hp: Hyperparameters, batch: int, max_objects: int
) -> float:
    """Validation mAP (IoU = overlap_threshold) of the module's `det_out` over `data`."""
    detections = []
    for pixels, label, real in batches(data, batch, max_objects, None):
        module.forward(mx.io.DataBatch([mx.nd.array(pixels)], [mx.nd.array(label)]), is_train=False)
        det = module.get_outputs()[3].asnumpy()
        for i in range(real):
            d = det[i]
            detections.append(d[d[:, 0] >= 0])
    score, _ = mean_average_precision(detections, data.boxes, hp.num_classes, hp.overlap_threshold)
    return score


def bind_module(
    symbol: mx.sym.Symbol,
    batch: int,
    data_shape: int,
    max_objects: int,
    for_training: bool,
    fixed: list[str] | None = None,
) -> mx.mod.Module:
    """The SSD bound on the CPU for `batch` images and labels of `max_objects` boxes, Xavier-initialised."""
    module = mx.mod.Module(
        symbol, data_names=("data",), label_names=("label",), context=mx.cpu(), fixed_param_names=fixed
    )
    module.bind(
        data_shapes=[("data", (batch, 3, data_shape, data_shape))],
        label_shapes=[("label", (batch, max(1, max_objects), 5))],
        for_training=for_training,
    )
    module.init_params(initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    return module


def run(args: argparse.Namespace) -> None:
    """Train (or, in fast mode, only build and evaluate) and write model.tar.gz."""
    started = time.monotonic()
    hp = load_hyperparameters(args.hyperparameters)
    log.info("Final configuration: %s", hp.raw)
    backbone = args.backbone or (hp.base_network if args.mode == "fast" else "tiny")
    log.info(
        "Base network: %s (mode %s, image_shape %d, %d classes)",
        backbone,
        args.mode,
        hp.image_shape,
        hp.num_classes,
    )
    warm = getattr(args, "model", None) is not None
    notes = hyperparameter_notes(hp, backbone, args.mode, warm)
    train_samples = read_manifest(args.train, args.label_attribute, hp.num_classes)
    val_samples = read_manifest(args.validation, args.label_attribute, hp.num_classes)
    most = max(_check_label_width(train_samples, hp), _check_label_width(val_samples, hp))
    log.info(
        "Train channel: %d images (%d with no boxes); validation channel: %d images",
        len(train_samples),
        sum(1 for s in train_samples if not s.boxes),
        len(val_samples),
    )
    if hp.num_training_samples != len(train_samples):
        notes.append(
            f"num_training_samples={hp.num_training_samples} but the train channel has {len(train_samples)} "
            "images; lr_scheduler_step counts epochs over the real images"
        )
    if hp.optimizer == "adadelta":
        notes.append("learning_rate: MXNet's adadelta optimizer has no learning rate; not used")
    fixed: list[str] = []
    symbol = build_training_graph(
        backbone, hp.num_classes, hp.image_shape, hp.nms_threshold, False, hp.nms_topk
    )
    if args.mode == "train" and hp.freeze_layer_pattern:
        fixed = [
            n
            for n in symbol.list_arguments()
            if n not in ("data", "label") and re.search(hp.freeze_layer_pattern, n)
        ]
        log.info("freeze_layer_pattern %r freezes %d parameters", hp.freeze_layer_pattern, len(fixed))
        if not fixed:
            notes.append(
                f"freeze_layer_pattern={hp.freeze_layer_pattern!r} matches no layer of the {backbone} network"
            )
    for note in notes:
        log.warning("Hyperparameter not honoured: %s", note)
    seed = None
    if warm:
        seed = load_seed_model(args.model, hp)
        log.info("Incremental training: starting from the model channel's %s", args.model.name)

    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    validation = load_dataset(val_samples, hp.image_shape)
    if args.mode == "fast":
        module = bind_module(symbol, EVAL_BATCH, hp.image_shape, most, for_training=False)
        if seed is not None:
            seed_module(module, *seed)
        score = evaluate(module, validation, hp, EVAL_BATCH, most)
        _quality(0, "validation mAP <score>", score)
        arg_params, aux_params = module.get_params()
        if seed is not None:
            log.warning("Model is the model channel's, not trained further (fast mode): mAP %.4f", score)
        else:
            log.warning("Model is UNTRAINED (fast mode): initial weights, validation mAP %.4f", score)
        write_model_archive(args.output, symbol, arg_params, aux_params, hp.raw)
        log.info("Wrote %s in %.1f s", args.output, time.monotonic() - started)
        return
    _train(args, hp, backbone, symbol, train_samples, validation, most, fixed, started, seed)


def _train(
    args: argparse.Namespace,
    hp: Hyperparameters,
    backbone: str,
    symbol: mx.sym.Symbol,
    train_samples: list[Sample],
    validation: Dataset,
    most: int,
    fixed: list[str],
    started: float,
    seed: tuple[dict, dict] | None = None,
) -> None:
    """Train for up to the plan's epochs (and --max-seconds), keep the best epoch, write it.

    With ``seed`` (the model channel's weights) training starts from them; their validation mAP
    before the first update is logged (not as a quality metric: SageMaker reports epochs only).
    """
    budget = args.max_seconds
    train = load_dataset(train_samples, hp.image_shape)
    log.info("Decoded %d + %d images in %.1f s", len(train), len(validation), time.monotonic() - started)
    batch = hp.mini_batch_size
    per_epoch = max(1, -(-len(train) // batch))
    module = bind_module(symbol, batch, hp.image_shape, most, for_training=True, fixed=fixed)
    eval_module = bind_module(symbol, EVAL_BATCH, hp.image_shape, most, for_training=False)
    if seed is not None:
        seed_module(module, *seed)
        eval_module.set_params(*module.get_params())
        log.info(
            "Model channel's model before training: validation mAP %.4f",
            evaluate(eval_module, validation, hp, EVAL_BATCH, most),
        )
    epochs, optimizer_params, notes = learning_plan(
        hp, backbone, per_epoch, budget, started, warm=seed is not None
    )
    for note in notes:
        log.warning("Hyperparameter not honoured: %s", note)
    module.init_optimizer(kvstore=None, optimizer=hp.optimizer, optimizer_params=optimizer_params)
    rng = random.Random(args.seed)
    best = (-1.0, -1, None, None)
    epochs_without_gain = 0
    epoch_seconds = 0.0
    for epoch in range(epochs):
        t0 = time.monotonic()
        if budget is not None and time.monotonic() - started + epoch_seconds > budget:
            log.info("Time budget of %.0f s reached before epoch %d; stopping", budget, epoch)
            break
        cls_sum = loc_sum = 0.0
        n = 0
        for pixels, label, _ in batches(train, batch, most, rng):
            module.forward_backward(mx.io.DataBatch([mx.nd.array(pixels)], [mx.nd.array(label)]))
            module.update()
            outs = module.get_outputs()
            cls_prob, loc_loss, cls_label = outs[0].asnumpy(), outs[1].asnumpy(), outs[2].asnumpy()
            valid = cls_label >= 0
            target = np.maximum(cls_label, 0).astype(int)[:, None, :]
            picked = np.take_along_axis(cls_prob, target, axis=1)[:, 0]
            cls_sum += float(-np.log(np.maximum(picked[valid], 1e-12)).sum() / max(1, valid.sum()))
            loc_sum += float(loc_loss.sum() / max(1, (cls_label > 0).sum()))
            n += 1
        _quality(epoch, "train cross_entropy <loss>", cls_sum / max(1, n))
        _quality(epoch, "train smooth_l1 <loss>", loc_sum / max(1, n))
        arg_params, aux_params = module.get_params()
        eval_module.set_params(arg_params, aux_params)
        score = evaluate(eval_module, validation, hp, EVAL_BATCH, most)
        _quality(epoch, "validation mAP <score>", score)
        if score > best[0]:
            improved_enough = best[0] <= 0 or (score - best[0]) / best[0] > hp.early_stopping_tolerance
            best = (score, epoch, copy.deepcopy(arg_params), copy.deepcopy(aux_params))
            log.info("Updating the best model with validation-mAP=%.4f", score)
            epochs_without_gain = 0 if improved_enough else epochs_without_gain + 1
        else:
            epochs_without_gain += 1
        print(
            f"#progress_metric: host={HOST}, completed {100 * (epoch + 1) // epochs} % of epochs", flush=True
        )
        epoch_seconds = time.monotonic() - t0
        log.info("Epoch[%d] Time cost=%.1f s", epoch, epoch_seconds)
        if (
            hp.early_stopping
            and epoch + 1 >= hp.early_stopping_min_epochs
            and epochs_without_gain >= hp.early_stopping_patience
        ):
            log.info("Early stopping: no improvement in %d epochs", epochs_without_gain)
            break
    if best[2] is None:
        raise TrainingError(f"no epoch finished within --max-seconds {budget:g} (decoding took part of it)")
    score, epoch, arg_params, aux_params = best
    log.info(
        "Best epoch %d, validation mAP %.4f; training took %.1f s", epoch, score, time.monotonic() - started
    )
    print(f"#quality_metric: host={HOST}, validation mAP <score>=({score:.4f})", flush=True)
    write_model_archive(args.output, symbol, arg_params, aux_params, hp.raw)
    log.info("Wrote %s", args.output)
