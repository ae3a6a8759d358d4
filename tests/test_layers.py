"""The layering of STYLE.md: science code never imports I/O or workflow libraries."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qsmflow"
FORBIDDEN = {
    "algorithms": {"nipype", "nibabel", "bids", "torch", "qsmflow.interfaces",
                   "qsmflow.workflows", "qsmflow.cli", "qsmflow.dl"},
    "dl": {"nipype", "nibabel", "bids", "qsmflow.interfaces", "qsmflow.workflows",
           "qsmflow.cli"},
    "reports": {"nipype", "qsmflow.workflows", "qsmflow.cli"},
    "interfaces": {"qsmflow.workflows", "qsmflow.cli"},
    "workflows": {"qsmflow.cli"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer):
    offenders = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not offenders, offenders
