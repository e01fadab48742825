"""The one builder of SageMaker's object-detection (SSD) graphs, as MXNet symbols.

`build_training_graph` reproduces the training graph the built-in algorithm writes to
`model_algo_1-symbol.json` (mxnet-ssd's `symbol_builder.get_symbol_train`, with SageMaker's
anchor sizes and naming): the base network, extra feature layers `multi_feat_<k>_conv_{1x1,3x3}`,
per-layer `<layer>_{loc,cls}_pred_conv` and `<layer>_anchors`, the three body tensors
`multibox_loc_pred` (Concat), `multibox_cls_pred` (transpose) and `multibox_anchors` (Reshape),
then `MultiBoxTarget`, SoftmaxOutput `cls_prob`, smooth_l1/MakeLoss `loc_loss`, MakeLoss `cls_label`
and `MultiBoxDetection` `detection` under MakeLoss `det_out`, with a `label` input.

`build_deploy_graph` is what mxnet-ssd's deploy.py rebuilt (`symbol_builder.get_symbol`): the same
body with SoftmaxActivation `cls_prob` and `detection` as the only head. It is the reference the
pure-Python model fix is checked against.

Every graph is built in a fresh name scope, so MXNet's automatic names (`transpose0`, `flatten1`,
`_plus12`, ...) come out as in a SageMaker job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mxnet as mx

from ml_tools import backbones

BASE_NETWORKS: tuple[str, ...] = ("resnet-50", "vgg-16", "tiny")
VARIANCES = (0.1, 0.1, 0.2, 0.2)
# Scale after the last layer's minimum size, for its geometric-mean second anchor size.
_LAST_SIZE_NEXT = 1.05


@dataclass(frozen=True)
class SsdConfig:
    """Where the SSD head taps the base network and how its anchors are shaped."""

    from_layers: tuple[str, ...]
    num_filters: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    min_sizes: tuple[float, ...]
    ratios: tuple[tuple[float, ...], ...]
    normalizations: tuple[int, ...]
    steps: tuple[float, ...] = ()
    min_filter: int = 128
    body: Callable[[int], mx.sym.Symbol] = field(default=backbones.resnet50, compare=False)

    @property
    def sizes(self) -> list[tuple[float, float]]:
        """(min, max) anchor size per layer; max is the geometric mean with the next layer's min."""
        nexts = [*self.min_sizes[1:], _LAST_SIZE_NEXT]
        return [(s, round(math.sqrt(s * n), 6)) for s, n in zip(self.min_sizes, nexts, strict=True)]


_R3 = (1, 2, 0.5)
_R5 = (1, 2, 0.5, 3, 1.0 / 3)


def ssd_config(base_network: str, data_shape: int) -> SsdConfig:
    """The SSD configuration SageMaker uses for `base_network` at `data_shape` (plus `tiny`)."""
    if base_network == "resnet-50":
        return SsdConfig(
            from_layers=("_plus12", "_plus15", "", "", "", ""),
            num_filters=(-1, -1, 512, 256, 256, 128),
            strides=(-1, -1, 2, 2, 2, 2),
            pads=(-1, -1, 1, 1, 1, 1),
            min_sizes=(0.1, 0.2, 0.37, 0.54, 0.71, 0.88),
            ratios=(_R3, _R5, _R5, _R5, _R3, _R3),
            normalizations=(-1,) * 6,
            body=backbones.resnet50,
        )
    if base_network == "vgg-16":
        if data_shape >= 448:
            return SsdConfig(
                from_layers=("relu4_3", "relu7", "", "", "", "", ""),
                num_filters=(512, -1, 512, 256, 256, 256, 256),
                strides=(-1, -1, 2, 2, 2, 2, 1),
                pads=(-1, -1, 1, 1, 1, 1, 1),
                min_sizes=(0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9),
                ratios=(_R3, _R5, _R5, _R5, _R5, _R3, _R3),
                normalizations=(20, -1, -1, -1, -1, -1, -1),
                steps=tuple(x / 512.0 for x in (8, 16, 32, 64, 128, 256, 512)) if data_shape == 512 else (),
                body=backbones.vgg16_reduced,
            )
        return SsdConfig(
            from_layers=("relu4_3", "relu7", "", "", "", ""),
            num_filters=(512, -1, 512, 256, 256, 256),
            strides=(-1, -1, 2, 2, 1, 1),
            pads=(-1, -1, 1, 1, 0, 0),
            min_sizes=(0.1, 0.2, 0.37, 0.54, 0.71, 0.88),
            ratios=(_R3, _R5, _R5, _R5, _R3, _R3),
            normalizations=(20, -1, -1, -1, -1, -1),
            steps=tuple(x / 300.0 for x in (8, 16, 32, 64, 100, 300)) if data_shape == 300 else (),
            body=backbones.vgg16_reduced,
        )
    if base_network == "tiny":
        return SsdConfig(
            from_layers=("tiny_relu4b", "tiny_relu5b", "", "", "", ""),
            num_filters=(-1, -1, 128, 128, 96, 64),
            strides=(-1, -1, 2, 2, 2, 2),
            pads=(-1, -1, 1, 1, 1, 1),
            min_sizes=(0.1, 0.2, 0.37, 0.54, 0.71, 0.88),
            ratios=(_R3, _R5, _R5, _R5, _R3, _R3),
            normalizations=(-1,) * 6,
            min_filter=32,
            body=backbones.tiny,
        )
    raise ValueError(f"base_network must be one of {', '.join(BASE_NETWORKS)}; got {base_network!r}")


def _num(x: float) -> str:
    """A number as SageMaker's Python 2 `str` wrote it in attribute strings (12 significant digits)."""
    return str(x) if isinstance(x, int) else f"{x:.12g}"


def _conv_act_layer(
    from_layer: mx.sym.Symbol, name: str, num_filter: int, kernel: int, pad: int, stride: int
) -> mx.sym.Symbol:
    bias = mx.sym.Variable(name=f"{name}_conv_bias", init=mx.init.Constant(0.0), attr={"__lr_mult__": "2.0"})
    conv = mx.sym.Convolution(
        data=from_layer,
        kernel=(kernel, kernel),
        pad=(pad, pad),
        stride=(stride, stride),
        num_filter=num_filter,
        name=f"{name}_conv",
        bias=bias,
    )
    return mx.sym.Activation(data=conv, act_type="relu", name=f"{name}_relu")


def _multi_layer_feature(body: mx.sym.Symbol, cfg: SsdConfig) -> list[mx.sym.Symbol]:
    internals = body.get_internals()
    layers: list[mx.sym.Symbol] = []
    for k, (from_layer, num_filter, s, p) in enumerate(
        zip(cfg.from_layers, cfg.num_filters, cfg.strides, cfg.pads, strict=True)
    ):
        if from_layer:
            layers.append(internals[from_layer + "_output"])
            continue
        num_1x1 = max(cfg.min_filter, num_filter // 2)
        conv_1x1 = _conv_act_layer(layers[-1], f"multi_feat_{k}_conv_1x1", num_1x1, 1, 0, 1)
        layers.append(_conv_act_layer(conv_1x1, f"multi_feat_{k}_conv_3x3", num_filter, 3, p, s))
    return layers


def _multibox_layer(
    layers: Sequence[mx.sym.Symbol], num_classes: int, cfg: SsdConfig
) -> tuple[mx.sym.Symbol, mx.sym.Symbol, mx.sym.Symbol]:
    """Per-layer loc/cls predictions and anchors, joined into the three body tensors."""
    loc_layers, cls_layers, anchor_layers = [], [], []
    num_channels = [n for n, norm in zip(cfg.num_filters, cfg.normalizations, strict=True) if norm > 0]
    classes_with_background = num_classes + 1
    for k, from_layer in enumerate(layers):
        from_name = from_layer.name
        if cfg.normalizations[k] > 0:
            from_layer = mx.sym.L2Normalization(data=from_layer, mode="channel", name=f"{from_name}_norm")
            scale = mx.sym.Variable(
                name=f"{from_name}_scale",
                shape=(1, num_channels.pop(0), 1, 1),
                init=mx.init.Constant(cfg.normalizations[k]),
                attr={"__wd_mult__": "0.1"},
            )
            from_layer = mx.sym.broadcast_mul(lhs=scale, rhs=from_layer)
        size = cfg.sizes[k]
        ratio = cfg.ratios[k]
        num_anchors = len(size) - 1 + len(ratio)
        bias = mx.sym.Variable(
            name=f"{from_name}_loc_pred_conv_bias", init=mx.init.Constant(0.0), attr={"__lr_mult__": "2.0"}
        )
        loc = mx.sym.Convolution(
            data=from_layer,
            bias=bias,
            kernel=(3, 3),
            stride=(1, 1),
            pad=(1, 1),
            num_filter=num_anchors * 4,
            name=f"{from_name}_loc_pred_conv",
        )
        loc = mx.sym.transpose(loc, axes=(0, 2, 3, 1))
        loc_layers.append(mx.sym.Flatten(data=loc))
        bias = mx.sym.Variable(
            name=f"{from_name}_cls_pred_conv_bias", init=mx.init.Constant(0.0), attr={"__lr_mult__": "2.0"}
        )
        cls = mx.sym.Convolution(
            data=from_layer,
            bias=bias,
            kernel=(3, 3),
            stride=(1, 1),
            pad=(1, 1),
            num_filter=num_anchors * classes_with_background,
            name=f"{from_name}_cls_pred_conv",
        )
        cls = mx.sym.transpose(cls, axes=(0, 2, 3, 1))
        cls_layers.append(mx.sym.Flatten(data=cls))
        step = (cfg.steps[k], cfg.steps[k]) if cfg.steps else "(-1.0, -1.0)"
        anchors = mx.sym.contrib.MultiBoxPrior(
            from_layer,
            sizes="(" + ",".join(_num(x) for x in size) + ")",
            ratios="(" + ",".join(_num(x) for x in ratio) + ")",
            clip=False,
            name=f"{from_name}_anchors",
            steps=step,
        )
        anchor_layers.append(mx.sym.Flatten(data=anchors))
    loc_preds = mx.sym.Concat(*loc_layers, num_args=len(loc_layers), dim=1, name="multibox_loc_pred")
    cls_preds = mx.sym.Concat(*cls_layers, num_args=len(cls_layers), dim=1)
    cls_preds = mx.sym.Reshape(data=cls_preds, shape=(0, -1, classes_with_background))
    cls_preds = mx.sym.transpose(cls_preds, axes=(0, 2, 1), name="multibox_cls_pred")
    anchor_boxes = mx.sym.Concat(*anchor_layers, num_args=len(anchor_layers), dim=1)
    anchor_boxes = mx.sym.Reshape(data=anchor_boxes, shape=(0, -1, 4), name="multibox_anchors")
    return loc_preds, cls_preds, anchor_boxes


def _check(base_network: str, num_classes: int, data_shape: int) -> SsdConfig:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    if not isinstance(data_shape, int) or data_shape < 64:
        raise ValueError(f"data_shape (image_shape) must be an integer of at least 64; got {data_shape!r}")
    return ssd_config(base_network, data_shape)


def _detection(
    cls_prob: mx.sym.Symbol,
    loc_preds: mx.sym.Symbol,
    anchor_boxes: mx.sym.Symbol,
    nms_threshold: float,
    force_suppress: bool,
    nms_topk: int,
) -> mx.sym.Symbol:
    """The `detection` node both graphs end in (under `det_out` in the training graph)."""
    return mx.sym.contrib.MultiBoxDetection(
        cls_prob,
        loc_preds,
        anchor_boxes,
        name="detection",
        nms_threshold=nms_threshold,
        force_suppress=force_suppress,
        variances=VARIANCES,
        nms_topk=nms_topk,
    )


def _ssd_heads(cfg: Any, num_classes: int) -> tuple[mx.sym.Symbol, mx.sym.Symbol, mx.sym.Symbol]:
    """Base network, feature layers and multibox predictions: the part both graphs share."""
    layers = _multi_layer_feature(cfg.body(num_classes), cfg)
    return _multibox_layer(layers, num_classes, cfg)


def build_training_graph(
    base_network: str,
    num_classes: int,
    data_shape: int,
    nms_threshold: float = 0.45,
    force_suppress: bool = False,
    nms_topk: int = 400,
) -> mx.sym.Symbol:
    """The training graph SageMaker writes: outputs `cls_prob`, `loc_loss`, `cls_label`, `det_out`."""
    cfg = _check(base_network, num_classes, data_shape)
    with mx.name.NameManager():
        label = mx.sym.Variable("label")
        loc_preds, cls_preds, anchor_boxes = _ssd_heads(cfg, num_classes)
        tmp = mx.sym.contrib.MultiBoxTarget(
            anchor_boxes,
            label,
            cls_preds,
            overlap_threshold=0.5,
            ignore_label=-1,
            negative_mining_ratio=3,
            minimum_negative_samples=0,
            negative_mining_thresh=0.5,
            variances=VARIANCES,
            name="multibox_target",
        )
        loc_target, loc_target_mask, cls_target = tmp[0], tmp[1], tmp[2]
        cls_prob = mx.sym.SoftmaxOutput(
            data=cls_preds,
            label=cls_target,
            ignore_label=-1,
            use_ignore=True,
            grad_scale=1.0,
            multi_output=True,
            normalization="valid",
            name="cls_prob",
        )
        loc_loss_ = mx.sym.smooth_l1(
            name="loc_loss_", data=loc_target_mask * (loc_preds - loc_target), scalar=1.0
        )
        loc_loss = mx.sym.MakeLoss(loc_loss_, grad_scale=1.0, normalization="valid", name="loc_loss")
        cls_label = mx.sym.MakeLoss(data=cls_target, grad_scale=0, name="cls_label")
        det = _detection(cls_prob, loc_preds, anchor_boxes, nms_threshold, force_suppress, nms_topk)
        det = mx.sym.MakeLoss(data=det, grad_scale=0, name="det_out")
        return mx.sym.Group([cls_prob, loc_loss, cls_label, det])


def build_deploy_graph(
    base_network: str,
    num_classes: int,
    data_shape: int,
    nms_threshold: float = 0.45,
    force_suppress: bool = False,
    nms_topk: int = 400,
) -> mx.sym.Symbol:
    """The inference graph deploy.py wrote: SoftmaxActivation `cls_prob`, then `detection` only."""
    cfg = _check(base_network, num_classes, data_shape)
    with mx.name.NameManager():
        loc_preds, cls_preds, anchor_boxes = _ssd_heads(cfg, num_classes)
        cls_prob = mx.sym.SoftmaxActivation(data=cls_preds, mode="channel", name="cls_prob")
        return _detection(cls_prob, loc_preds, anchor_boxes, nms_threshold, force_suppress, nms_topk)
