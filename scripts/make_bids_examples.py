"""Regenerate ``bids_examples/`` deterministically: ``python scripts/make_bids_examples.py
[SEED]`` (``make bids-examples``).

``--metadata-only`` rewrites only the descriptions, READMEs, sidecars and tables, which
is fast and leaves the images as they are. See ``qsmflow/simulation/bids_example.py``
for what the phantom contains. The script lives outside the dataset, so that the dataset
holds only BIDS files.
"""

import shutil
import sys
from pathlib import Path

from qsmflow.simulation.bids_example import write_bids_example, write_example_metadata

EXAMPLES = Path(__file__).resolve().parents[1] / "bids_examples"

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--metadata-only" in args:
        write_example_metadata(EXAMPLES)
    else:
        for child in EXAMPLES.iterdir():
            if child.name.startswith("sub-") or child.name in ("derivatives",):
                shutil.rmtree(child)
        write_bids_example(EXAMPLES, seed=int(args[0]) if args else 2025)
