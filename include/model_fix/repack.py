"""Repack a SageMaker model.tar.gz: rename the artefacts, add the deploy model, reproducibly.

Seed step 5 by hand: unzip, rename ``model_algo_1-*`` to a chosen prefix, run deploy.py, tar
and gzip again with 7-zip, upload over the original. Here the result is a new archive holding
``<prefix>-symbol.json``, ``<prefix>-<epoch>.params``, ``deploy_<prefix>-symbol.json``,
``deploy_<prefix>-<epoch>.params`` and ``hyperparams.json``, identical bytes for identical input;
the original is never written to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NamedTuple

from model_fix.archive import sha256_file, write_reproducible_tar
from model_fix.errors import InputNotFoundError, OverwriteRefusedError
from model_fix.file_copy import link_or_copy
from model_fix.fix import (
    SYMBOL_SUFFIX,
    FixOptions,
    check_name,
    fix_model,
    is_archive,
    open_model_source,
    params_name,
)
from model_fix.hyperparams import HYPERPARAMS_FILE


class RepackResult(NamedTuple):
    """What :func:`repack_model_archive` wrote."""

    archive_path: Path
    members: list[str]
    deploy_model_name: str
    num_classes: int
    sha256: str
    source_prefix: str
    prefix: str
    passthrough: bool
    removed_nodes: int
    warnings: list[str]


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def repack_model(
    source: str | Path,
    dst_tar: str | Path,
    prefix: str | None = None,
    options: FixOptions = FixOptions(),
) -> RepackResult:
    """Repack the model at ``source`` (tar.gz, folder or prefix) into the archive ``dst_tar``.

    ``prefix`` renames the artefacts (None keeps their name). ``options.prefix`` picks the model
    inside ``source``. Refuses ``dst_tar`` equal to ``source``; writes through a temporary
    folder beside ``dst_tar`` and renames the finished archive into place.
    """
    source = Path(source)
    dst = Path(dst_tar)
    if prefix is not None:
        check_name(prefix)
    if _same_path(source, dst):
        raise OverwriteRefusedError(f"{dst}: the repacked archive must not replace its source {source}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".model-repack-", dir=dst.parent) as work:
        stage = Path(work) / "model"
        stage.mkdir()
        with open_model_source(source, options, work_dir=Path(work)) as files:
            name = prefix or files.name
            link_or_copy(files.symbol, stage / f"{name}{SYMBOL_SUFFIX}")
            link_or_copy(files.params, stage / params_name(name, options.epoch))
            if files.hyperparams:
                link_or_copy(files.hyperparams, stage / HYPERPARAMS_FILE)
            source_prefix = files.name
        # The stage is private and only read by the tar writer: the deploy weights may be a link.
        fixed = fix_model(stage / name, stage, options._replace(prefix=None), link_params=True)
        members = {path.name: path for path in sorted(stage.iterdir())}
        write_reproducible_tar(dst, members)
    return RepackResult(
        archive_path=dst,
        members=sorted(members),
        deploy_model_name=fixed.deploy_prefix,
        num_classes=fixed.num_classes,
        sha256=sha256_file(dst),
        source_prefix=source_prefix,
        prefix=name,
        passthrough=fixed.passthrough,
        removed_nodes=fixed.removed_nodes,
        warnings=fixed.warnings,
    )


def repack_model_archive(
    src_tar: str | Path,
    dst_tar: str | Path,
    prefix: str,
    options: FixOptions = FixOptions(),
) -> RepackResult:
    """Extract ``src_tar`` safely, rename ``model_algo_1-*`` to ``<prefix>-*``, fix, and write ``dst_tar``.

    ``dst_tar`` holds ``<prefix>-symbol.json``, ``<prefix>-<epoch>.params``,
    ``deploy_<prefix>-symbol.json``, ``deploy_<prefix>-<epoch>.params`` and ``hyperparams.json``
    (when the source has one), sorted, with fixed metadata: same input, same bytes.
    """
    src = Path(src_tar)
    if not is_archive(src):
        raise InputNotFoundError(f"{src}: not found or not a tar archive")
    return repack_model(src, dst_tar, check_name(prefix), options)
