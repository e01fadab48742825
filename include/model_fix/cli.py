"""Command line with mxnet-ssd deploy.py's options (``python deploy.py`` / ``python -m model_fix``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from model_fix.errors import ModelFixError, OptionError
from model_fix.fix import FixOptions, check_name, fix_model, is_archive

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: deploy.py's options plus the source, output folder and archive."""
    parser = argparse.ArgumentParser(
        prog="deploy.py",
        description=(
            "Convert a SageMaker/mxnet-ssd SSD training model to the deploy model "
            "(deploy_<prefix>-symbol.json and -NNNN.params), without mxnet."
        ),
    )
    parser.add_argument(
        "source",
        nargs="?",
        help="model.tar.gz, folder or model prefix (default: --prefix, as deploy.py)",
    )
    parser.add_argument(
        "--network",
        help="base network (vgg16_reduced, resnet-50, ...); the graph's own structure is used, "
        "a mismatch is only a warning",
    )
    parser.add_argument("--epoch", type=int, default=0, help="epoch of the trained model (default 0)")
    parser.add_argument(
        "--prefix",
        help="without a source: the trained model's path prefix, e.g. model/model_algo_1 "
        "(deploy.py's rule applies: a prefix ending in '_' gets <network>_<data-shape> appended); "
        "with a source: the model's name inside it",
    )
    parser.add_argument(
        "--data-shape",
        dest="data_shape",
        type=int,
        help="input size the model was trained at; compared with hyperparams.json's image_shape "
        "(the graph does not depend on it)",
    )
    parser.add_argument(
        "--num-class",
        dest="num_classes",
        type=int,
        help="number of classes, checked against the graph (default: hyperparams.json's)",
    )
    parser.add_argument(
        "--nms",
        dest="nms_threshold",
        type=float,
        help="non-maximum suppression threshold (default: hyperparams.json's, else 0.45)",
    )
    parser.add_argument(
        "--topk",
        dest="nms_topk",
        type=int,
        help="apply NMS to the top k detections (default: hyperparams.json's, else 400)",
    )
    force = parser.add_mutually_exclusive_group()
    force.add_argument(
        "--force",
        dest="force_suppress",
        type=_bool,
        default=None,
        metavar="BOOL",
        help="suppress overlapping boxes across classes (default true)",
    )
    force.add_argument(
        "--no-force-suppress",
        dest="force_suppress",
        action="store_false",
        default=None,
        help="suppress overlapping boxes only within a class",
    )
    parser.add_argument(
        "--out-dir", type=Path, help="where to write the deploy files (default: beside the model)"
    )
    parser.add_argument(
        "--output-tar", type=Path, help="also write a new model.tar.gz with the renamed and deploy artefacts"
    )
    parser.add_argument("--rename", help="with --output-tar: rename the artefacts to this prefix")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    return parser


def _resolve(args: argparse.Namespace) -> tuple[Path, Path | None, FixOptions]:
    """Source, output folder and options from the parsed arguments (deploy.py's prefix rules)."""
    options = FixOptions(
        epoch=args.epoch,
        nms_threshold=args.nms_threshold,
        nms_topk=args.nms_topk,
        force_suppress=args.force_suppress is not False,
        num_classes=args.num_classes,
        data_shape=args.data_shape,
        network=args.network,
    )
    if args.source is None:
        if not args.prefix:
            raise OptionError("give a source (model.tar.gz, folder or prefix) or --prefix")
        prefix = args.prefix
        if prefix.endswith("_"):
            if not args.network or not args.data_shape:
                raise OptionError(
                    f"prefix {prefix!r} ends in '_': deploy.py appends <network>_<data-shape>, give both"
                )
            prefix = f"{prefix}{args.network}_{args.data_shape}"
        source = Path(prefix)
        out_dir = args.out_dir or source.parent
    else:
        source = Path(args.source)
        options = options._replace(prefix=args.prefix)
        if args.out_dir:
            out_dir = args.out_dir
        elif source.is_dir():
            out_dir = source
        elif is_archive(source):
            out_dir = None
        else:
            out_dir = source.parent
    if args.rename and not args.output_tar:
        raise OptionError("--rename applies to --output-tar only")
    if args.rename is not None:
        check_name(args.rename, "--rename")
    if out_dir is None and not args.output_tar:
        raise OptionError(f"{source} is an archive: give --out-dir, --output-tar or both")
    return source, out_dir, options


def _warn(parser: argparse.ArgumentParser, warnings: list[str], quiet: bool) -> None:
    if not quiet:
        for warning in warnings:
            print(f"{parser.prog}: warning: {warning}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 bad model or option, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        source, out_dir, options = _resolve(args)
        if out_dir is not None:
            result = fix_model(source, out_dir, options)
            _warn(parser, result.warnings, args.quiet)
            if not args.quiet:
                if result.passthrough:
                    print(f"Already a deploy model: {result.prefix}")
                print(f"Saved model: {result.params_path}")
                print(f"Saved symbol: {result.symbol_path}")
                print(
                    f"{result.num_classes} classes, {result.removed_nodes} training nodes removed, "
                    f"nms_threshold {result.nms_threshold}, nms_topk {result.nms_topk}, "
                    f"force_suppress {result.force_suppress}"
                )
        if args.output_tar:
            from model_fix.repack import repack_model  # tarfile and gzip only when an archive is asked for

            repacked = repack_model(source, args.output_tar, args.rename, options)
            if out_dir is None:
                _warn(parser, repacked.warnings, args.quiet)
            if not args.quiet:
                print(f"Saved archive: {repacked.archive_path} ({', '.join(repacked.members)})")
                print(f"Deploy model name: {repacked.deploy_model_name}  sha256 {repacked.sha256}")
    except ModelFixError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0
