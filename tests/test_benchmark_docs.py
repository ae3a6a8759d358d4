"""docs/benchmarks.md is the page that the recorded benchmark results give."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "benchmarks/make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_generated_from_the_results():
    make_docs = _make_docs()
    assert make_docs.main(["--check"]) == 0, "run `make benchmarks-docs` and commit the page"


def test_every_result_names_its_command_machine_and_generator():
    for path in sorted((ROOT / "benchmarks/results").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["name"] == path.stem
        for key in ("command", "generator", "machine", "date"):
            assert record[key], f"{path.name}: empty {key}"


def test_a_result_without_a_section_is_still_shown_whole(tmp_path):
    make_docs = _make_docs()
    record = {"name": "toy", "command": "python benchmarks/toy.py", "generator": "toy data",
              "machine": "m", "date": "2026-12-01",
              "results": {"dice": {"sub-18": 0.9512}, "rows": [{"a": 1, "b": 0.25}]}}
    text = make_docs._generic(record)
    assert "`dice.sub-18`: 0.951" in text
    assert "| a | b |" in text and "| 1 | 0.250 |" in text


def test_every_benchmark_that_make_benchmarks_runs_exists_and_imports():
    """A script that no longer imports (a helper moved) fails here, not an hour into
    ``make benchmarks``."""
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks/run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    scripts = sorted({arguments[0] for _, arguments in run_all.BENCHMARKS})
    assert len(scripts) >= 10
    for script in scripts:
        path = ROOT / "benchmarks" / script
        assert path.is_file(), f"make benchmarks runs {script}, which does not exist"
        spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # top level only: each runs under __main__
        assert callable(getattr(module, "main", None)), f"{script} has no main()"
