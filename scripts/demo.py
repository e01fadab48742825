"""``make demo``: run the whole DAG on the embedded emulator (see include/emulator/demo.py)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

from emulator.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
