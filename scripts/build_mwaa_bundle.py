"""Build what a user uploads to Amazon MWAA: ``dags/``, ``plugins.zip`` and ``requirements.txt``.

``plugins.zip`` holds the ``deeplens_pipeline`` package (operators, triggers, hooks, domain logic),
the pure-Python ``model_fix`` package the repack task imports, and the inference function's source
as ``deeplens_pipeline/lambda_src/`` (packaged into the Lambda zip at run time). MWAA unpacks
plugins.zip into its plugins folder, which is on ``sys.path``. Entries are sorted and dated
1980-01-01 so the same sources give the same zip.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _files(base: Path) -> list[Path]:
    return sorted(
        p
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def build(out: Path) -> Path:
    """Write ``out/dags``, ``out/plugins.zip`` and ``out/requirements.txt``; return ``out``."""
    if out.exists():
        shutil.rmtree(out)
    (out / "dags").mkdir(parents=True)
    for dag in sorted((ROOT / "dags").glob("*.py")):
        shutil.copy2(dag, out / "dags" / dag.name)
    shutil.copy2(ROOT / "requirements.txt", out / "requirements.txt")
    entries: list[tuple[str, Path]] = []
    for package, source in (
        ("deeplens_pipeline", ROOT / "plugins" / "deeplens_pipeline"),
        ("model_fix", ROOT / "include" / "model_fix"),
        ("deeplens_pipeline/lambda_src", ROOT / "include" / "lambda"),
    ):
        entries += [(f"{package}/{p.relative_to(source).as_posix()}", p) for p in _files(source)]
    entries.append((".airflowignore", ROOT / "plugins" / ".airflowignore"))
    with zipfile.ZipFile(out / "plugins.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    """``make mwaa-bundle``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "mwaa")
    args = parser.parse_args(argv)
    out = build(args.out)
    print(f"MWAA bundle in {out}: dags/, plugins.zip, requirements.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
