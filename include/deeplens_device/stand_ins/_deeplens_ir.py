"""The stand-in's "optimised model": an XML topology file and a ``.bin`` weights file, as the device's.

On a DeepLens, ``mo.optimize`` runs Intel's model optimizer and writes an Intermediate
Representation (``mxnet_<model>_FP16_FUSED.xml`` + ``.bin``) that ``awscam.Model`` loads into the
GPU. Here the ``.xml`` records the MXNet graph (as JSON) and the input it was optimised for, and
the ``.bin`` holds the weights (``mx.nd.save`` format, rounded to the requested precision), which
``awscam.Model`` binds on the CPU. Shared by the ``mo`` and ``awscam`` stand-ins only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple

FORMAT_VERSION = "deeplens-device-stand-in-1"


class OptimizedModel(NamedTuple):
    """What an optimised model file says."""

    name: str
    symbol_json: str
    weights_path: Path
    width: int
    height: int
    img_format: str
    precision: str


def model_file_name(model_name: str, precision: str, fused: bool, extension: str) -> str:
    """``mxnet_<model>_<precision>[_FUSED].<ext>``: the device's name for an optimised MXNet model."""
    return "mxnet_{}_{}{}.{}".format(model_name, precision, "_FUSED" if fused else "", extension)


def write_model_file(path: Path, model: OptimizedModel) -> None:
    """Write the ``.xml`` of ``model`` at ``path`` (the weights are written by the caller)."""
    net = ElementTree.Element(
        "net", name=model.name, version=FORMAT_VERSION, framework="mxnet", precision=model.precision
    )
    ElementTree.SubElement(
        net,
        "input",
        name="data",
        width=str(model.width),
        height=str(model.height),
        channels="3",
        img_format=model.img_format,
    )
    ElementTree.SubElement(net, "weights", file=model.weights_path.name)
    ElementTree.SubElement(net, "symbol").text = model.symbol_json
    ElementTree.ElementTree(net).write(str(path), encoding="utf-8", xml_declaration=True)


def read_model_file(path: Path) -> OptimizedModel:
    """Read an ``.xml`` written by ``write_model_file``; ValueError names what is wrong."""
    try:
        net = ElementTree.parse(str(path)).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise ValueError(f"{path}: not an optimised model file ({exc})") from exc
    if net.tag != "net" or net.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a model file written by mo.optimize (version {net.get('version')!r})")
    data, weights, symbol = net.find("input"), net.find("weights"), net.find("symbol")
    if data is None or weights is None or symbol is None or not symbol.text:
        raise ValueError(f"{path}: the model file lacks its input, weights or symbol")
    return OptimizedModel(
        name=net.get("name", ""),
        symbol_json=symbol.text,
        weights_path=Path(path).parent / weights.get("file", ""),
        width=int(data.get("width", "0")),
        height=int(data.get("height", "0")),
        img_format=data.get("img_format", "BGR"),
        precision=net.get("precision", "FP16"),
    )
