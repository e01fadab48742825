"""Turn a SageMaker SSD training model into the deploy model (what mxnet-ssd's deploy.py did).

``fix_model`` reads ``<name>-symbol.json``, ``<name>-<epoch>.params`` and ``hyperparams.json``
from a model.tar.gz, a folder or a path prefix, checks them, and writes
``deploy_<name>-symbol.json`` (the deploy graph), ``deploy_<name>-<epoch>.params`` (the same
bytes, copied by the kernel while the graph is fixed) and ``hyperparams.json`` to ``out_dir``.
Inputs are never overwritten.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

from model_fix.errors import (
    HyperparamsError,
    InputNotFoundError,
    ModelFixError,
    NumClassesMismatchError,
    OptionError,
    OverwriteRefusedError,
    ParamsMismatchError,
    UnsafeArchiveError,
)
from model_fix.file_copy import BackgroundCopy, copy_file, link_or_copy
from model_fix.hyperparams import HYPERPARAMS_FILE, hyperparam_float, hyperparam_int, load_hyperparams
from model_fix.limits import MAX_HYPERPARAMS_BYTES, MAX_PARAMS_BYTES, MAX_SYMBOL_BYTES, size_in_words
from model_fix.log import INFO, WARNING, log
from model_fix.params_file import ParamEntry, read_params_index
from model_fix.ssd import (
    DetectionSettings,
    GraphKind,
    detect_base_network,
    graph_arguments,
    normalise_network,
    to_deploy_graph,
)
from model_fix.symbol_json import Graph, dumps_symbol, node_attrs, parse_symbol, read_symbol_text

DEPLOY_PREFIX = "deploy_"
DEFAULT_NMS_THRESHOLD = 0.45
DEFAULT_NMS_TOPK = 400
SYMBOL_SUFFIX = "-symbol.json"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_LISTED = 5


class FixOptions(NamedTuple):
    """What deploy.py's command line set. None means: from hyperparams.json, else the default.

    ``prefix`` picks the artefacts' name inside a folder or archive (None: the only training
    model there). ``nms_threshold`` defaults to hyperparams.json's, else 0.45; ``nms_topk`` to
    hyperparams.json's, else 400; ``force_suppress`` is on, as in deploy.py. ``num_classes``
    (hyperparams.json's when None) must equal the class count the graph predicts. ``data_shape``
    and ``network`` only produce warnings when they differ from hyperparams.json's
    ``image_shape`` and from the base network found in the graph: the graph itself does not
    depend on them.
    """

    prefix: str | None = None
    epoch: int = 0
    nms_threshold: float | None = None
    nms_topk: int | None = None
    force_suppress: bool = True
    num_classes: int | None = None
    data_shape: int | None = None
    network: str | None = None


class FixResult(NamedTuple):
    """What :func:`fix_model` wrote and found."""

    symbol_path: Path
    params_path: Path
    hyperparams_path: Path | None
    prefix: str
    deploy_prefix: str
    num_classes: int
    passthrough: bool
    removed_nodes: int
    epoch: int
    nms_threshold: float
    nms_topk: int
    force_suppress: bool
    base_network: str | None
    warnings: list[str]


class ModelFiles(NamedTuple):
    """The artefacts of one model in a folder."""

    directory: Path
    name: str
    symbol: Path
    params: Path
    hyperparams: Path | None


def check_name(name: str, what: str = "prefix") -> str:
    """Return ``name`` if it is a plain file-name prefix (no path separators), else raise OptionError.

    The whole name must match (``fullmatch``: a trailing line break is refused too).
    """
    if not _NAME_RE.fullmatch(name) or name.endswith(".") or ".." in name:
        raise OptionError(
            f"{what} {name!r}: must start with a letter or digit and use only letters, digits, "
            "'.', '_' and '-' (no path, no '..', no line break, not ending in '.')"
        )
    return name


def _validate_options(options: FixOptions) -> None:
    if not 0 <= options.epoch <= 9999:
        raise OptionError(f"epoch {options.epoch}: must be between 0 and 9999")
    if options.nms_threshold is not None and not 0 < options.nms_threshold <= 1:
        raise OptionError(f"nms_threshold {options.nms_threshold}: must be in (0, 1]")
    if options.nms_topk is not None and not (options.nms_topk == -1 or options.nms_topk > 0):
        raise OptionError(f"nms_topk {options.nms_topk}: must be a positive count, or -1 for no limit")
    if options.num_classes is not None and options.num_classes < 1:
        raise OptionError(f"num_classes {options.num_classes}: must be at least 1")
    if options.data_shape is not None and options.data_shape < 1:
        raise OptionError(f"data_shape {options.data_shape}: must be a positive size in pixels")
    if options.prefix is not None:
        check_name(options.prefix)


def params_name(name: str, epoch: int) -> str:
    """``<name>-<epoch>.params`` with the epoch in four digits, as MXNet's save_checkpoint names it."""
    return f"{name}-{epoch:04d}.params"


def find_model_files(directory: str | Path, name: str | None = None, epoch: int = 0) -> ModelFiles:
    """Find ``<name>-symbol.json`` and ``<name>-<epoch>.params`` in ``directory``.

    Without ``name``, the only training model there is taken (a ``deploy_`` model when it is
    alone). Raises :class:`InputNotFoundError` naming what is missing or ambiguous.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputNotFoundError(f"{directory}: not a folder")
    return choose_model_files(directory, {p.name for p in directory.iterdir() if p.is_file()}, name, epoch)


def choose_model_files(
    directory: Path, file_names: Collection[str], name: str | None = None, epoch: int = 0
) -> ModelFiles:
    """:func:`find_model_files` on a list of the file names in ``directory`` (which need not exist yet).

    What an archive's listing is checked with before anything is extracted from it.
    """
    names = sorted(n[: -len(SYMBOL_SUFFIX)] for n in file_names if n.endswith(SYMBOL_SUFFIX))
    if name is None:
        candidates = [n for n in names if not n.startswith(DEPLOY_PREFIX)] or names
        if not candidates:
            raise InputNotFoundError(f"{directory}: no *{SYMBOL_SUFFIX} file")
        if len(candidates) > 1:
            raise InputNotFoundError(f"{directory}: several models {candidates}; choose one with --prefix")
        name = candidates[0]
    symbol = directory / f"{name}{SYMBOL_SUFFIX}"
    if f"{name}{SYMBOL_SUFFIX}" not in file_names:  # the whole name: a prefix holding a path never matches
        raise InputNotFoundError(f"{symbol}: not found (models here: {names or 'none'})")
    params = directory / params_name(name, epoch)
    if params_name(name, epoch) not in file_names:
        found = sorted(n for n in file_names if n.startswith(f"{name}-") and n.endswith(".params"))
        hint = f"; found {found}, choose one with --epoch" if found else ""
        raise InputNotFoundError(f"{params}: not found{hint}")
    hyperparams = directory / HYPERPARAMS_FILE if HYPERPARAMS_FILE in file_names else None
    return ModelFiles(directory, name, symbol, params, hyperparams)


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    """True for a tar (optionally compressed) file, by name or by content."""
    if not path.is_file():
        return False
    if path.name.endswith(ARCHIVE_SUFFIXES):
        return True
    import tarfile  # only for inputs whose name does not say (keeps a folder fix's start-up lean)

    return tarfile.is_tarfile(path)


@contextmanager
def open_model_source(
    source: str | Path, options: FixOptions, work_dir: Path | None = None
) -> Iterator[ModelFiles]:
    """Yield the model files of a tar.gz (extracted safely to a temporary folder), folder or prefix.

    A prefix is ``<folder>/<name>`` (``<name>-symbol.json`` may also be given). Errors about
    files inside an archive name them ``<archive>:<member>``. An archive is extracted under
    ``work_dir`` (default: the system's temporary folder).
    """
    path = Path(source)
    if path.is_dir():
        yield find_model_files(path, options.prefix, options.epoch)
        return
    if is_archive(path):
        import tempfile

        with tempfile.TemporaryDirectory(prefix=".model-fix-", dir=work_dir) as work:
            try:
                yield _extract_model(path, Path(work), options)
            except ModelFixError as exc:
                raise type(exc)(str(exc).replace(f"{work}{os.sep}", f"{path}:")) from exc
        return
    if path.name.endswith(ARCHIVE_SUFFIXES):
        raise InputNotFoundError(f"{path}: archive not found")
    name = path.name[: -len(SYMBOL_SUFFIX)] if path.name.endswith(SYMBOL_SUFFIX) else path.name
    if path.is_file() and not path.name.endswith(SYMBOL_SUFFIX):
        raise InputNotFoundError(f"{path}: not a model.tar.gz, a folder or a model prefix")
    if options.prefix is not None and options.prefix != name:
        raise OptionError(f"prefix {options.prefix!r} differs from the source's model name {name!r}")
    if not path.parent.is_dir():
        raise InputNotFoundError(f"{path}: folder {path.parent} not found")
    yield find_model_files(path.parent, name, options.epoch)


def _extract_model(archive: Path, work: Path, options: FixOptions) -> ModelFiles:
    """Check every member of ``archive``, choose the model, and extract only its files into ``work``.

    The choice is made on the archive's listing, and each chosen member's declared size is
    checked against its kind's limit (symbol, params, hyperparams.json) before anything is
    written: a member the fix does not use is never extracted, and one too large never written.
    """
    from model_fix.archive import list_members, safe_extract

    listing = list_members(archive)
    top_level = {name: size for name, size in listing.items() if "/" not in name}
    files = choose_model_files(work, top_level, options.prefix, options.epoch)
    used = [(files.symbol, MAX_SYMBOL_BYTES, "symbol file"), (files.params, MAX_PARAMS_BYTES, ".params file")]
    if files.hyperparams:
        used.append((files.hyperparams, MAX_HYPERPARAMS_BYTES, "hyperparams.json"))
    for path, limit, what in used:
        if top_level[path.name] > limit:
            raise UnsafeArchiveError(
                f"{archive}: member {path.name!r}: {top_level[path.name]} bytes, more than the "
                f"{size_in_words(limit)} a {what} may have"
            )
    safe_extract(archive, work, members=[path.name for path, _, _ in used])
    return files


def _check_params(entries: list[ParamEntry], graph: Graph, params_path: Path, symbol_path: Path) -> None:
    """Params keys must be exactly the graph's arguments (``arg:``) and auxiliary states (``aux:``)."""
    problems: list[str] = []
    duplicates = sorted(key for key, count in Counter(entry.key for entry in entries).items() if count > 1)
    if duplicates:
        problems.append(f"duplicate keys {duplicates[:_MAX_LISTED]}")
    unprefixed = [entry.key for entry in entries if not entry.kind]
    if unprefixed:
        problems.append(
            f"{len(unprefixed)} keys without an 'arg:'/'aux:' prefix, e.g. {unprefixed[:_MAX_LISTED]}"
        )
    args, aux = graph_arguments(graph)
    have = {(entry.kind, entry.name) for entry in entries if entry.kind}
    want = {("arg", name) for name in args} | {("aux", name) for name in aux}
    missing = sorted(f"{kind}:{name}" for kind, name in want - have)
    extra = sorted(f"{kind}:{name}" for kind, name in have - want)
    if missing:
        problems.append(f"{len(missing)} weights the graph needs are missing, e.g. {missing[:_MAX_LISTED]}")
    if extra:
        problems.append(f"{len(extra)} keys are not arguments of the graph, e.g. {extra[:_MAX_LISTED]}")
    by_name = {entry.name: entry for entry in entries if entry.kind == "arg"}
    nodes = graph["nodes"]
    for node in nodes:
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        size_key = "num_filter" if node["op"] == "Convolution" else "num_hidden"
        try:
            size = int(node_attrs(node)[size_key])
        except (KeyError, ValueError):
            continue
        for entry_ref in node["inputs"][1:3]:
            weight = by_name.get(nodes[entry_ref[0]]["name"])
            if weight is not None and weight.shape and weight.shape[0] != size:
                problems.append(
                    f"{weight.key} has shape {weight.shape} but {node['name']!r} has {size_key}={size}"
                )
    if problems:
        raise ParamsMismatchError(f"{params_path} does not match {symbol_path.name}: " + "; ".join(problems))


def _resolve_settings(options: FixOptions, hyperparams: dict[str, str], source: str) -> DetectionSettings:
    """Explicit option, else hyperparams.json, else deploy.py's default."""
    nms = options.nms_threshold
    if nms is None:
        nms = hyperparam_float(hyperparams, "nms_threshold", source)
        if nms is not None and not 0 < nms <= 1:
            raise HyperparamsError(f"{source}: nms_threshold={nms} is not in (0, 1]")
    topk = options.nms_topk
    if topk is None:
        topk = hyperparam_int(hyperparams, "nms_topk", source)
        if topk is not None and not (topk == -1 or topk > 0):
            raise HyperparamsError(f"{source}: nms_topk={topk} is neither positive nor -1")
    return DetectionSettings(
        nms_threshold=DEFAULT_NMS_THRESHOLD if nms is None else nms,
        nms_topk=DEFAULT_NMS_TOPK if topk is None else topk,
        force_suppress=options.force_suppress,
    )


def _check_num_classes(
    graph_classes: int, options: FixOptions, hyperparams: dict[str, str], files: ModelFiles
) -> None:
    if options.num_classes is not None and options.num_classes != graph_classes:
        raise NumClassesMismatchError(
            f"num_classes {options.num_classes} was given, but {files.symbol} "
            f"predicts {graph_classes} classes"
        )
    from_file = hyperparam_int(hyperparams, "num_classes", str(files.hyperparams))
    if options.num_classes is None and from_file is not None and from_file != graph_classes:
        raise NumClassesMismatchError(
            f"{files.hyperparams} says num_classes={from_file}, but {files.symbol} predicts "
            f"{graph_classes} classes; they are not from the same training job"
        )


def _warn(warnings: list[str], message: str) -> None:
    log(__name__, WARNING, message)
    warnings.append(message)


@contextmanager
def _atomic(destination: Path) -> Iterator[Path]:
    """A partial file beside ``destination`` to write; renamed into place only if the block succeeds."""
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        yield partial
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def _same(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.samefile(b)


def _check_outputs(outputs: list[tuple[Path, Path, bool]], inputs: list[Path]) -> None:
    """Refuse an output that is an input, unless it is its own counterpart and may stay as is."""
    for output, counterpart, may_be_same in outputs:
        for candidate in inputs:
            if _same(output, candidate) and not (candidate == counterpart and may_be_same):
                raise OverwriteRefusedError(f"{output}: would overwrite the input {candidate}")


def fix_model(
    source: str | Path,
    out_dir: str | Path,
    options: FixOptions = FixOptions(),
    *,
    link_params: bool = False,
) -> FixResult:
    """Write the deploy model for the SSD model at ``source`` (tar.gz, folder or prefix) to ``out_dir``.

    Outputs ``deploy_<name>-symbol.json``, ``deploy_<name>-<epoch>.params`` (byte-for-byte copy,
    made by the kernel in the background while the graph is fixed) and ``hyperparams.json`` when
    the source has one. A source that is already a deploy model is passed through unchanged
    (``passthrough``). Raises a :class:`~model_fix.errors.ModelFixError` subclass naming the
    file at fault; never overwrites an input, and leaves no partial file behind.

    ``link_params`` hard-links the weights instead of copying them: only for private staging
    folders (as :func:`~model_fix.repack.repack_model` uses), since a later in-place write to
    the deploy weights would then change the training weights too.
    """
    _validate_options(options)
    out_dir = Path(out_dir)
    with open_model_source(source, options) as files:
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        params_copy = None
        if not link_params:
            partial = out_dir / f".{files.params.name}.{os.getpid()}.partial"
            params_copy = BackgroundCopy(files.params, partial)
        try:
            return _write_deploy_model(source, files, out_dir, options, params_copy)
        except BaseException:
            if params_copy is not None:
                params_copy.cancel()
            if created:
                with suppress(OSError):
                    out_dir.rmdir()
            raise


def _write_deploy_model(
    source: str | Path,
    files: ModelFiles,
    out_dir: Path,
    options: FixOptions,
    params_copy: BackgroundCopy | None,
) -> FixResult:
    """Check and convert ``files``, then write the deploy model (``params_copy`` is running)."""
    warnings: list[str] = []
    hyper_label = str(files.hyperparams or HYPERPARAMS_FILE)
    hyperparams = load_hyperparams(files.hyperparams) if files.hyperparams else {}
    settings = _resolve_settings(options, hyperparams, hyper_label)
    text = read_symbol_text(files.symbol)
    graph = parse_symbol(text, source=str(files.symbol))
    conversion = to_deploy_graph(graph, settings, source=str(files.symbol))
    _check_num_classes(conversion.num_classes, options, hyperparams, files)
    _check_params(read_params_index(files.params), graph, files.params, files.symbol)

    base_network = detect_base_network(graph)
    for origin, wanted in (
        ("was given", options.network),
        ("in hyperparams.json", hyperparams.get("base_network")),
    ):
        if wanted and base_network and normalise_network(wanted) != base_network:
            _warn(
                warnings,
                f"network {wanted!r} {origin}, but {files.symbol.name} has a {base_network} base",
            )
    trained_shape = hyperparam_int(hyperparams, "image_shape", hyper_label)
    if options.data_shape and trained_shape and options.data_shape != trained_shape:
        _warn(
            warnings,
            f"data_shape {options.data_shape} differs from the trained image_shape {trained_shape}",
        )

    passthrough = conversion.kind is GraphKind.DEPLOY
    if passthrough:
        kept = node_attrs(conversion.graph["nodes"][conversion.graph["heads"][0][0]])
        chosen = {
            "nms_threshold": str(settings.nms_threshold),
            "nms_topk": str(settings.nms_topk),
            "force_suppress": str(settings.force_suppress),
        }
        differing = {k: kept.get(k) for k, v in chosen.items() if kept.get(k) != v}
        if differing:
            _warn(warnings, f"{files.symbol.name} is already a deploy graph; kept its {differing}")
    keep_name = passthrough and files.name.startswith(DEPLOY_PREFIX)
    deploy_name = files.name if keep_name else DEPLOY_PREFIX + files.name
    out_symbol = out_dir / f"{deploy_name}{SYMBOL_SUFFIX}"
    out_params = out_dir / params_name(deploy_name, options.epoch)
    out_hyper = out_dir / HYPERPARAMS_FILE if files.hyperparams else None

    unchanged = passthrough and not conversion.changed
    outputs = [(out_symbol, files.symbol, unchanged), (out_params, files.params, unchanged)]
    if files.hyperparams and out_hyper:
        outputs.append((out_hyper, files.hyperparams, True))
    _check_outputs(outputs, [files.symbol, files.params] + ([files.hyperparams] if files.hyperparams else []))

    new_text = text if unchanged else dumps_symbol(conversion.graph) + ("\n" if text.endswith("\n") else "")
    if not _same(out_symbol, files.symbol):
        with _atomic(out_symbol) as partial:
            partial.write_text(new_text, encoding="utf-8")
    if files.hyperparams and out_hyper and not _same(out_hyper, files.hyperparams):
        with _atomic(out_hyper) as partial:
            copy_file(files.hyperparams, partial)
    if _same(out_params, files.params):
        if params_copy is not None:
            params_copy.cancel()
    elif params_copy is not None:
        params_copy.finish(out_params)
    else:
        with _atomic(out_params) as partial:
            link_or_copy(files.params, partial)
    log(
        __name__,
        INFO,
        "%s: %s -> %s (%d classes, %d training nodes removed)",
        source,
        files.name,
        deploy_name,
        conversion.num_classes,
        conversion.removed_nodes,
    )
    return FixResult(
        symbol_path=out_symbol,
        params_path=out_params,
        hyperparams_path=out_hyper,
        prefix=files.name,
        deploy_prefix=deploy_name,
        num_classes=conversion.num_classes,
        passthrough=passthrough,
        removed_nodes=conversion.removed_nodes,
        epoch=options.epoch,
        nms_threshold=settings.nms_threshold,
        nms_topk=settings.nms_topk,
        force_suppress=settings.force_suppress,
        base_network=base_network,
        warnings=warnings,
    )
