"""Regenerate bids_examples/ deterministically: ``python bids_examples/make_bids_examples.py``.

See ``qsmflow/simulation/bids_example.py`` for what the phantom contains.
"""

import shutil
import sys
from pathlib import Path

from qsmflow.simulation.bids_example import write_bids_example

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for child in here.iterdir():  # keep this script and the README
        if child.name.startswith("sub-") or child.name in ("derivatives",):
            shutil.rmtree(child)
    write_bids_example(here, seed=int(sys.argv[1]) if len(sys.argv) > 1 else 2025)
