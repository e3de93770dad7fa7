"""Write params.yaml from conf/ exactly as `dvc exp run` does (DVC's own compose function).

Usage: python pipelines/compose_params.py [override ...]   (e.g. train.mnist_cnn.seed=1)
"""

import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    compose_and_dump(ROOT / "params.yaml", str(ROOT / "conf"), None, "config", str(ROOT),
                     sys.argv[1:])
