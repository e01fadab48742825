"""Output object names: ``<source stem>.jpg``, made safe for S3 keys and Ground Truth, collisions resolved.

Two sources whose stems collide (``a/x.png`` and ``b/x.jpg``, or ``X.jpg`` and ``x.jpg`` on a
case-insensitive disk) all get ``<stem>--<8 hex of sha1(source path)>.jpg``: the name depends only
on the set of colliding paths, never on listing order, so reruns give the same keys.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 120


def safe_stem(source: str) -> str:
    """The file stem of ``source``, accents dropped, anything but ``[A-Za-z0-9._-]`` replaced by ``_``."""
    stem = PurePosixPath(source).stem
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")  # É -> E
    stem = _UNSAFE.sub("_", stem).strip("._") or "image"
    return stem[:MAX_STEM]


def path_tag(source: str) -> str:
    """8 hex digits identifying a source path."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:8]


def output_names(sources: Iterable[str]) -> dict[str, str]:
    """Map each source path to its output file name (``<stem>.jpg``), deterministic and unique."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for source in sorted(set(sources)):
        by_stem[safe_stem(source).lower()].append(source)
    names: dict[str, str] = {}
    for group in by_stem.values():
        if len(group) == 1:
            names[group[0]] = f"{safe_stem(group[0])}.jpg"
        else:
            for source in group:
                names[source] = f"{safe_stem(source)}--{path_tag(source)}.jpg"
    taken = [n.lower() for n in names.values()]
    if len(set(taken)) != len(taken):  # a natural stem that looks like a tagged one: tag everything
        return {s: f"{safe_stem(s)}--{path_tag(s)}.jpg" for s in names}
    return names


def normalise_prefix(prefix: str) -> str:
    """``"input"`` -> ``"input/"``; ``""`` and ``"/"`` -> ``""``."""
    prefix = (prefix or "").strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"
