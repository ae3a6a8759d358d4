"""Regenerate ``bids_examples/`` deterministically from the whole-head phantom:
``python scripts/make_bids_examples.py [--heads-dir DIR] [--cache-dir DIR]``
(``make bids-examples``).

``--metadata-only`` rewrites only the descriptions, READMEs, sidecars and tables, which
is fast and leaves the images as they are (the simulation's record is read back from the
ground truth's Chimap sidecars). See ``qsmflow/simulation/example_dataset.py`` for what
the dataset contains. The anatomy of each head (registrations: about 2 min) is cached in
``--cache-dir``. The script lives outside the dataset, so that the dataset holds only
BIDS files.
"""

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "bids_examples"


def main(argv=None) -> int:
    from qsmflow.simulation.example_dataset import (
        recorded_metadata,
        write_example,
        write_example_metadata,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata-only", action="store_true")
    parser.add_argument("--heads-dir", type=Path, default=REPO.parent / "shared" / "data" / "heads")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "qsmflow")
    parser.add_argument("--out-dir", type=Path, default=EXAMPLES)
    args = parser.parse_args(argv)
    if args.metadata_only:
        write_example_metadata(args.out_dir, recorded_metadata(args.out_dir))
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for child in args.out_dir.iterdir():
        if child.name.startswith("sub-") or child.name == "derivatives":
            shutil.rmtree(child)
    write_example(args.out_dir, args.heads_dir, args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
