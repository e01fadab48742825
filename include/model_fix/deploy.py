"""Drop-in for mxnet-ssd's deploy.py, without mxnet or Python 2.

    python deploy.py --network vgg16_reduced --prefix model/jhg_choc_model_algo_1 \
        --nms 0.45 --data-shape 480 --num-class 2

writes model/deploy_jhg_choc_model_algo_1-symbol.json and -0000.params. Same as
``python -m model_fix``; run ``python deploy.py --help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the package from its parent folder, not this one's modules.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from model_fix.cli import main

if __name__ == "__main__":
    sys.exit(main())
