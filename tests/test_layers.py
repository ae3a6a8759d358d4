"""The layering of STYLE.md, checked on every module's transitive imports.

Every module of ``qsmflow/`` is parsed with ``ast``; every import in it (relative ones
resolved, and imports inside functions counted: they run too) makes an edge of the import
graph, and importing ``a.b.c`` also runs ``a`` and ``a.b``. For each module, everything it
reaches through the graph must stay inside its layer's allowed layers, and no module on
the way may import a third-party package its layer forbids. A violation is reported with
the chain of imports that makes it.

A second check imports the science layers in a fresh interpreter and looks at
``sys.modules``: it also sees what the third-party packages themselves pull in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qsmflow"
ROOT = "qsmflow"

# The top-level modules and packages of qsmflow (one layer each) and, for each, the layers
# it may reach (itself, the root package ``qsmflow`` and ``data`` always) and the
# third-party packages it must not import, directly or through anything it reaches.
# ``simulation`` is development code (phantoms, example datasets, the training data):
# only ``training`` may use it, so nothing that runs at inference imports it.
BASE = {"constants", "files", "data"}
SCIENCE_FORBIDS = {"nipype", "nibabel", "bids"}  # bids: pybids
LAYERS: dict[str, tuple[set[str], set[str]]] = {
    "constants": (set(), {"numpy", "scipy", "torch", "nibabel", "nipype", "bids"}),
    "files": (set(), {"numpy", "scipy", "torch", "nibabel", "nipype", "bids"}),
    "data": (set(), {"numpy", "scipy", "torch", "nibabel", "nipype", "bids"}),
    "algorithms": (BASE, SCIENCE_FORBIDS | {"torch", "pandas", "matplotlib"}),
    "dl": (BASE | {"algorithms"}, SCIENCE_FORBIDS | {"pandas", "matplotlib"}),
    "inversion": (BASE | {"algorithms", "dl"}, SCIENCE_FORBIDS),
    "bids": (BASE, {"nipype", "torch"}),
    "atlases": (BASE | {"bids", "algorithms"}, {"nipype", "torch"}),
    "analysis": (BASE | {"algorithms", "bids"}, {"nipype", "torch"}),
    "reports": (BASE | {"algorithms", "bids", "analysis"}, {"nipype", "torch"}),
    "interfaces": (BASE | {"algorithms", "dl", "inversion", "bids", "atlases", "analysis",
                           "reports"}, set()),
    "workflows": (BASE | {"algorithms", "dl", "inversion", "bids", "atlases", "analysis",
                          "reports", "interfaces"}, set()),
    "cli": (BASE | {"algorithms", "dl", "inversion", "bids", "atlases", "analysis",
                    "reports", "interfaces", "workflows"}, set()),
    "simulation": (BASE | {"algorithms", "atlases", "bids"}, {"nipype", "torch"}),
    "training": (BASE | {"algorithms", "dl", "simulation", "atlases", "bids"}, {"nipype"}),
}


def _module_name(path: Path, package_dir: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _imports(path: Path, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (submodules included)."""
    here = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            for alias in node.names:  # ``from pkg import submodule``
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
    return found


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> what it imports: qsmflow modules by full name, third-party packages by
    their top-level name (standard-library modules are left out)."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        name, is_package = _module_name(path, package_dir)
        files[name] = (path, is_package)
    modules = set(files)
    graph = {}
    for name, (path, is_package) in files.items():
        edges = set(_with_parents(name)[:-1])  # a module runs its packages' __init__
        for target in _imports(path, name, is_package, modules):
            if target == ROOT or target.startswith(ROOT + "."):
                edges.update(t for t in _with_parents(target) if t in modules)
            elif target.split(".")[0] not in sys.stdlib_module_names:
                edges.add(target.split(".")[0])
        edges.discard(name)
        graph[name] = edges
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def check_layers(package_dir: Path, layers=LAYERS) -> list[str]:
    """Every layer violation in the package at ``package_dir``, with its import chain."""
    graph = import_graph(package_dir)
    violations = []
    for module in sorted(graph):
        layer = _layer(module)
        if layer == ROOT:  # ``import qsmflow`` must stay light: every module runs it
            allowed, forbidden = set(), {"numpy", "scipy", "torch", "nibabel", "nipype", "bids"}
        elif layer not in layers:
            violations.append(f"{module}: layer {layer!r} is not in the layer table")
            continue
        else:
            allowed, forbidden = layers[layer]
        allowed = allowed | {layer, ROOT}
        parent = {module: None}
        queue = deque([module])
        while queue:  # breadth first: the shortest chain to each module
            current = queue.popleft()
            for target in sorted(graph.get(current, ())):
                if target in parent:
                    continue
                parent[target] = current
                chain = [target]
                while chain[-1] != module:
                    chain.append(parent[chain[-1]])
                how = " -> ".join(reversed(chain))
                if target in graph:
                    if _layer(target) not in allowed:
                        violations.append(f"{layer} may not reach {_layer(target)}: {how}")
                    queue.append(target)
                elif target in forbidden:
                    violations.append(f"{layer} may not import {target}: {how}")
    return violations


def test_every_package_is_in_the_layer_table():
    present = {_layer(m) for m in import_graph(PACKAGE)} - {ROOT}
    assert present == set(LAYERS), (present ^ set(LAYERS))


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_imports_point_one_way(layer):
    violations = [v for v in check_layers(PACKAGE) if v.startswith(f"{layer} ")]
    assert not violations, "\n".join(violations)


def test_the_root_package_imports_nothing_heavy():
    assert not [v for v in check_layers(PACKAGE) if v.startswith(f"{ROOT} ")]


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "qsmflow" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "qsmflow"


TREE = {"__init__.py": "", "constants.py": "X = 1\n", "algorithms/__init__.py": "",
        "bids/__init__.py": ""}


def test_the_checker_passes_a_clean_tree(tmp_path):
    package = _write_tree(tmp_path, {**TREE, "algorithms/fit.py": """
        import numpy as np
        from .. import constants
        from ._kernel import kernel
        """, "algorithms/_kernel.py": "from qsmflow.constants import X\n"})
    assert check_layers(package) == []


@pytest.mark.parametrize("helper", [
    {"algorithms/fit.py": "from ._io import load\n",  # a relative import of a helper
     "algorithms/_io.py": "def load(p):\n    import nibabel\n    return nibabel.load(p)\n"},
    {"algorithms/fit.py": "from qsmflow.bids import nifti\n",  # a helper in another layer
     "bids/nifti.py": "import nibabel as nib\n"},
    {"algorithms/fit.py": "import qsmflow.algorithms._io.deep\n",  # a package's __init__
     "algorithms/_io/__init__.py": "from nibabel import load\n",
     "algorithms/_io/deep.py": ""},
])
def test_the_checker_sees_nibabel_imported_through_a_helper(tmp_path, helper):
    """The test of the test: algorithms reaching nibabel through a helper is reported."""
    package = _write_tree(tmp_path, {**TREE, **helper})
    violations = check_layers(package)
    assert any(v.startswith("algorithms may not import nibabel: qsmflow.algorithms.fit -> ")
               for v in violations), violations


def test_the_checker_sees_inference_reaching_simulation(tmp_path):
    package = _write_tree(tmp_path, {**TREE, "dl/__init__.py": "", "simulation/__init__.py": "",
                                     "simulation/phantom.py": "import numpy\n",
                                     "dl/model.py": "from ..simulation import phantom\n"})
    assert check_layers(package) == [
        "dl may not reach simulation: qsmflow.dl.model -> qsmflow.simulation",
        "dl may not reach simulation: qsmflow.dl.model -> qsmflow.simulation.phantom"]


@pytest.mark.parametrize("modules,absent", [
    ("qsmflow.algorithms", {"torch", "nibabel", "nipype", "bids"}),
    ("qsmflow.dl qsmflow.inversion", {"nibabel", "nipype", "bids"}),
])
def test_science_layers_load_no_io_library_at_run_time(modules, absent):
    """What third-party packages pull in themselves, which the static graph cannot see."""
    names = []
    for name in modules.split():
        path = PACKAGE.joinpath(*name.split(".")[1:])
        names += [name] if path.with_suffix(".py").is_file() else [
            ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
            for p in sorted(path.rglob("*.py")) if p.name != "__init__.py"]
    code = (f"import importlib, sys\nfor m in {names!r}: importlib.import_module(m)\n"
            f"print(sorted(set({sorted(absent)!r}) & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=PACKAGE.parent).stdout.strip()
    assert loaded == "[]", f"importing {modules} loads {loaded}"
