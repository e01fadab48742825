"""Build what a user uploads to Amazon MWAA: ``dags/``, ``plugins.zip`` and ``requirements.txt``.

``plugins.zip`` holds the ``deeplens_pipeline`` package (operators, triggers, hooks, domain logic),
the pure-Python ``model_fix`` package the repack task imports, and the inference function's source
as ``deeplens_pipeline/lambda_src/`` (packaged into the Lambda zip at run time). MWAA unpacks
plugins.zip into its plugins folder, which is on ``sys.path``. Entries are sorted and dated
1980-01-01 so the same sources give the same zip.

One bundle per MWAA version: the sources are the same, the ``requirements.txt`` differs
(``requirements.txt`` for 3.3.1, ``requirements/mwaa/<version>.txt`` for 3.0.6 and 2.11.0, each
under its version's constraints). ``--airflow-version`` picks it; the default output folder is
``build/mwaa`` for 3.3.1 and ``build/mwaa-<version>`` for the others.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
LATEST = "3.3.1"
REQUIREMENTS = {
    LATEST: ROOT / "requirements.txt",
    "3.0.6": ROOT / "requirements" / "mwaa" / "3.0.6.txt",
    "2.11.0": ROOT / "requirements" / "mwaa" / "2.11.0.txt",
}
"""The requirements file a user uploads, by MWAA's Airflow version."""


def _files(base: Path) -> list[Path]:
    return sorted(
        p
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def default_out(airflow_version: str = LATEST) -> Path:
    """``build/mwaa`` for the latest MWAA version, ``build/mwaa-<version>`` for the others."""
    return ROOT / "build" / ("mwaa" if airflow_version == LATEST else f"mwaa-{airflow_version}")


def build(out: Path, airflow_version: str = LATEST) -> Path:
    """Write ``out/dags``, ``out/plugins.zip`` and ``out/requirements.txt`` for MWAA's
    ``airflow_version``; return ``out``."""
    if airflow_version not in REQUIREMENTS:
        raise ValueError(
            f"--airflow-version {airflow_version!r}: the bundles are for MWAA {', '.join(REQUIREMENTS)}"
        )
    if out.exists():
        shutil.rmtree(out)
    (out / "dags").mkdir(parents=True)
    for dag in sorted((ROOT / "dags").glob("*.py")):
        shutil.copy2(dag, out / "dags" / dag.name)
    shutil.copy2(REQUIREMENTS[airflow_version], out / "requirements.txt")
    entries: list[tuple[str, Path]] = []
    for package, source in (
        ("deeplens_pipeline", ROOT / "plugins" / "deeplens_pipeline"),
        ("model_fix", ROOT / "include" / "model_fix"),
        ("deeplens_pipeline/lambda_src", ROOT / "include" / "lambda"),
    ):
        entries += [(f"{package}/{p.relative_to(source).as_posix()}", p) for p in _files(source)]
    entries.append((".airflowignore", ROOT / "plugins" / ".airflowignore"))
    # The plugin that registers the operator extra links (Airflow 2 shows only registered ones).
    entries.append(("deeplens_links.py", ROOT / "plugins" / "deeplens_links.py"))
    with zipfile.ZipFile(out / "plugins.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    """``make mwaa-bundle`` (and ``mwaa-bundle-3.0.6``, ``mwaa-bundle-2.11.0``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airflow-version", default=LATEST, choices=sorted(REQUIREMENTS))
    parser.add_argument("--out", type=Path, help="default: build/mwaa (3.3.1) or build/mwaa-<version>")
    args = parser.parse_args(argv)
    out = build(args.out or default_out(args.airflow_version), args.airflow_version)
    print(f"MWAA {args.airflow_version} bundle in {out}: dags/, plugins.zip, requirements.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
