"""Base networks of the SSD detector, written as the MXNet symbols SageMaker's algorithm composes.

`resnet50` and `vgg16_reduced` follow mxnet-ssd's `symbol/resnet.py` and `symbol/vgg16_reduced.py`
(the networks behind the built-in algorithm's `base_network` values `resnet-50` and `vgg-16`),
layer for layer and name for name, classifier included: the classifier is never reached by the
SSD heads, but building it consumes MXNet's automatic names (`flatten0`, ...) exactly as SageMaker
did, so the automatic names of the SSD head match the real graph's.

`tiny` is this project's own base network for the emulator: small enough to train on two CPU
cores in minutes, built the same way (a `bn_data` input normalisation, a classifier tail) so the
SSD head on top of it is the same and carries the same names.
"""

from __future__ import annotations

import mxnet as mx

BN_MOMENTUM = 0.9
BN_EPS = 2e-5


def _residual_unit(data: mx.sym.Symbol, num_filter: int, stride: tuple[int, int], dim_match: bool, name: str):
    """A pre-activation bottleneck unit (resnet.py's `residual_unit` with bottle_neck=True)."""
    workspace = 256
    bn1 = mx.sym.BatchNorm(data=data, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=name + "_bn1")
    act1 = mx.sym.Activation(data=bn1, act_type="relu", name=name + "_relu1")
    conv1 = mx.sym.Convolution(
        data=act1,
        num_filter=int(num_filter * 0.25),
        kernel=(1, 1),
        stride=(1, 1),
        pad=(0, 0),
        no_bias=True,
        workspace=workspace,
        name=name + "_conv1",
    )
    bn2 = mx.sym.BatchNorm(data=conv1, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=name + "_bn2")
    act2 = mx.sym.Activation(data=bn2, act_type="relu", name=name + "_relu2")
    conv2 = mx.sym.Convolution(
        data=act2,
        num_filter=int(num_filter * 0.25),
        kernel=(3, 3),
        stride=stride,
        pad=(1, 1),
        no_bias=True,
        workspace=workspace,
        name=name + "_conv2",
    )
    bn3 = mx.sym.BatchNorm(data=conv2, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=name + "_bn3")
    act3 = mx.sym.Activation(data=bn3, act_type="relu", name=name + "_relu3")
    conv3 = mx.sym.Convolution(
        data=act3,
        num_filter=num_filter,
        kernel=(1, 1),
        stride=(1, 1),
        pad=(0, 0),
        no_bias=True,
        workspace=workspace,
        name=name + "_conv3",
    )
    if dim_match:
        shortcut = data
    else:
        shortcut = mx.sym.Convolution(
            data=act1,
            num_filter=num_filter,
            kernel=(1, 1),
            stride=stride,
            no_bias=True,
            workspace=workspace,
            name=name + "_sc",
        )
    return conv3 + shortcut


def resnet50(num_classes: int) -> mx.sym.Symbol:
    """ResNet-50 v2 (pre-activation) with its ImageNet-style classifier; SSD taps `_plus12`/`_plus15`."""
    units = (3, 4, 6, 3)
    filter_list = (64, 256, 512, 1024, 2048)
    data = mx.sym.Variable(name="data")
    data = mx.sym.identity(data=data, name="id")
    data = mx.sym.BatchNorm(data=data, fix_gamma=True, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn_data")
    body = mx.sym.Convolution(
        data=data,
        num_filter=filter_list[0],
        kernel=(7, 7),
        stride=(2, 2),
        pad=(3, 3),
        no_bias=True,
        name="conv0",
        workspace=256,
    )
    body = mx.sym.BatchNorm(data=body, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn0")
    body = mx.sym.Activation(data=body, act_type="relu", name="relu0")
    body = mx.sym.Pooling(data=body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for i, count in enumerate(units):
        stride = (1, 1) if i == 0 else (2, 2)
        body = _residual_unit(body, filter_list[i + 1], stride, False, name=f"stage{i + 1}_unit1")
        for j in range(count - 1):
            body = _residual_unit(body, filter_list[i + 1], (1, 1), True, name=f"stage{i + 1}_unit{j + 2}")
    bn1 = mx.sym.BatchNorm(data=body, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn1")
    relu1 = mx.sym.Activation(data=bn1, act_type="relu", name="relu1")
    pool1 = mx.sym.Pooling(data=relu1, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    flat = mx.sym.Flatten(data=pool1)
    fc1 = mx.sym.FullyConnected(data=flat, num_hidden=num_classes, name="fc1")
    return mx.sym.SoftmaxOutput(data=fc1, name="softmax")


def _vgg_conv(data: mx.sym.Symbol, name: str, num_filter: int) -> mx.sym.Symbol:
    conv = mx.sym.Convolution(data=data, kernel=(3, 3), pad=(1, 1), num_filter=num_filter, name="conv" + name)
    return mx.sym.Activation(data=conv, act_type="relu", name="relu" + name)


def vgg16_reduced(num_classes: int) -> mx.sym.Symbol:
    """VGG-16 with fc6/fc7 as (dilated) convolutions; SSD taps `relu4_3` and `relu7`."""
    data = mx.sym.Variable(name="data")
    body = data
    groups = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
    for group, convs, filters in groups:
        for k in range(1, convs + 1):
            body = _vgg_conv(body, f"{group}_{k}", filters)
        if group == 3:
            body = mx.sym.Pooling(
                data=body,
                pool_type="max",
                kernel=(2, 2),
                stride=(2, 2),
                pooling_convention="full",
                name="pool3",
            )
        elif group == 5:
            body = mx.sym.Pooling(
                data=body, pool_type="max", kernel=(3, 3), stride=(1, 1), pad=(1, 1), name="pool5"
            )
        else:
            body = mx.sym.Pooling(
                data=body, pool_type="max", kernel=(2, 2), stride=(2, 2), name=f"pool{group}"
            )
    conv6 = mx.sym.Convolution(
        data=body, kernel=(3, 3), pad=(6, 6), dilate=(6, 6), num_filter=1024, name="fc6"
    )
    relu6 = mx.sym.Activation(data=conv6, act_type="relu", name="relu6")
    conv7 = mx.sym.Convolution(data=relu6, kernel=(1, 1), pad=(0, 0), num_filter=1024, name="fc7")
    relu7 = mx.sym.Activation(data=conv7, act_type="relu", name="relu7")
    gpool = mx.sym.Pooling(data=relu7, pool_type="avg", kernel=(7, 7), global_pool=True, name="global_pool")
    conv8 = mx.sym.Convolution(data=gpool, num_filter=num_classes, kernel=(1, 1), name="fc8")
    flat = mx.sym.Flatten(data=conv8)
    return mx.sym.SoftmaxOutput(data=flat, name="softmax")


# Tiny base network: (name suffix, output channels, stride) per conv+BN+ReLU block.
TINY_BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("1", 16, 2),
    ("2", 32, 2),
    ("3a", 48, 2),
    ("3b", 48, 1),
    ("4a", 96, 2),
    ("4b", 96, 1),
    ("5a", 160, 2),
    ("5b", 160, 1),
)


def tiny(num_classes: int) -> mx.sym.Symbol:
    """A small plain conv net (about 0.6 M weights); SSD taps `tiny_relu4b` (stride 16) and `tiny_relu5b`.

    Raw 0..255 RGB goes in, as with resnet-50: `bn_data` learns the input normalisation, so the
    deploy model needs no mean subtraction on the device.
    """
    data = mx.sym.Variable(name="data")
    body = mx.sym.BatchNorm(data=data, fix_gamma=True, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn_data")
    for suffix, filters, stride in TINY_BLOCKS:
        body = mx.sym.Convolution(
            data=body,
            num_filter=filters,
            kernel=(3, 3),
            stride=(stride, stride),
            pad=(1, 1),
            no_bias=True,
            name=f"tiny_conv{suffix}",
        )
        body = mx.sym.BatchNorm(
            data=body, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"tiny_bn{suffix}"
        )
        body = mx.sym.Activation(data=body, act_type="relu", name=f"tiny_relu{suffix}")
    pool = mx.sym.Pooling(data=body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    flat = mx.sym.Flatten(data=pool)
    fc1 = mx.sym.FullyConnected(data=flat, num_hidden=num_classes, name="fc1")
    return mx.sym.SoftmaxOutput(data=fc1, name="softmax")
