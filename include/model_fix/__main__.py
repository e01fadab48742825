"""``python -m model_fix``: the deploy.py command line."""

from __future__ import annotations

import sys

from model_fix.cli import main

if __name__ == "__main__":
    sys.exit(main())
