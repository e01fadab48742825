"""``python3.7 -m pip install --user <requirement>...`` on the simulated DeepLens, without a network.

The Greengrass V2 recipe's Install step runs ``python3.7 -m pip install --user 'awsiotsdk>=1.11,<2'``.
The simulated device has no package index to install from, and its interpreter (the ML tools
environment) has no pip. So the device's ``python3.7`` answers ``-m pip install`` here: each
requirement already installed in a version it allows is reported as pip reports it ("Requirement
already satisfied: ...", exit 0); any other is refused with pip's own offline error ("Could not
find a version that satisfies the requirement ...", exit 1). Nothing is ever installed, so a
recipe asking for a package the device does not have fails at Install, as it would offline.

    python offline_pip.py install [--user] [-q|--quiet] [-U|--upgrade] REQUIREMENT...
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence

from packaging.requirements import InvalidRequirement, Requirement

IGNORED_FLAGS = ("--user", "-q", "--quiet", "-U", "--upgrade", "--no-input", "--disable-pip-version-check")


def check_requirement(text: str) -> tuple[bool, str]:
    """(satisfied, pip's message) for one requirement specifier such as ``awsiotsdk>=1.11,<2``."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        return False, f"ERROR: Invalid requirement: '{text}': {exc}"
    try:
        distribution = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None and requirement.specifier.contains(distribution.version, prereleases=True):
        where = distribution.locate_file("")
        return True, f"Requirement already satisfied: {requirement} in {where} ({distribution.version})"
    found = f"installed: {distribution.version}; " if distribution is not None else ""
    return False, (
        f"ERROR: Could not find a version that satisfies the requirement {requirement} "
        f"(from versions: none; {found}this simulated device installs nothing)\n"
        f"ERROR: No matching distribution found for {requirement}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """pip's exit status: 0 when every requirement is satisfied, 1 when one is not, 2 for bad usage."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "install":
        print(
            "ERROR: the simulated DeepLens's pip only answers 'install' (offline); got: " + " ".join(args),
            file=sys.stderr,
        )
        return 2
    requirements = []
    for arg in args[1:]:
        if arg in IGNORED_FLAGS:
            continue
        if arg.startswith("-"):
            print(
                f"ERROR: option {arg} is not supported by the simulated device's offline pip", file=sys.stderr
            )
            return 2
        requirements.append(arg)
    if not requirements:
        print("ERROR: You must give at least one requirement to install", file=sys.stderr)
        return 1
    status = 0
    for text in requirements:
        satisfied, message = check_requirement(text)
        print(message, file=sys.stdout if satisfied else sys.stderr)
        status = status if satisfied else 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
