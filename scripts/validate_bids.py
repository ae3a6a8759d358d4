"""Run the official BIDS validator on datasets and fail on any error, or on a warning that
``docs/bids_validation.md`` does not list with its reason (``make validate-bids``, CI).

    python scripts/validate_bids.py [--derivative] DATASET [DATASET ...]

``--derivative`` validates the datasets as BIDS Derivatives (``--datasetTypes
derivative``). Prints, per dataset, the counts and every error and undocumented warning.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from qsmflow.bids.validator import run_validator

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bids_validation.md"
# A row of the warnings table: | `CODE` | `Key` or - | where | reason |
ROW = re.compile(r"^\|\s*`(?P<code>[A-Z_0-9]+)`\s*\|\s*(?:`(?P<key>[^`]+)`|-)\s*\|")


def documented_warnings(docs: Path = DOCS) -> set[tuple[str, str]]:
    """(code, key) of every warning that the docs explain ("" where there is no key)."""
    return {(m["code"], m["key"] or "") for line in docs.read_text().splitlines()
            if (m := ROW.match(line.strip()))}


def check(dataset: Path, derivative: bool, allowed: set[tuple[str, str]]) -> bool:
    result = run_validator(dataset, dataset_types=("derivative",) if derivative else ())
    kinds = Counter((i.code, i.sub_code) for i in result.warnings)
    undocumented = {k: n for k, n in kinds.items() if k not in allowed}
    print(f"{dataset} ({'derivative' if derivative else 'as declared'}; {result.validator}, "
          f"schema {result.schema_version}): {len(result.errors)} error(s), "
          f"{len(result.warnings)} warning(s) of {len(kinds)} kind(s), "
          f"{sum(undocumented.values())} undocumented")
    for issue in result.errors:
        print(f"  ERROR {issue.code} {issue.sub_code} {issue.location}")
    for (code, key), n in sorted(undocumented.items()):
        print(f"  UNDOCUMENTED WARNING {code} {key} ({n}x): add it, with its reason, to "
              f"{DOCS.name} or fix it")
    return not result.errors and not undocumented


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--derivative", action="store_true",
                        help="validate as BIDS Derivatives (--datasetTypes derivative)")
    args = parser.parse_args(argv)
    allowed = documented_warnings()
    ok = [check(d, args.derivative, allowed) for d in args.datasets]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
