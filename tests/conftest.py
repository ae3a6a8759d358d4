import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def qsmflow_cache(tmp_path_factory):
    """One cache folder (the default atlas) for the whole session, not the user's own."""
    folder = tmp_path_factory.mktemp("qsmflow_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("QSMFLOW_CACHE_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """``bids_examples/`` through the pipeline once per test session, with its defaults
    (deepbet mask, LBV + refinement, NSIDL, the default atlas) as `make demo` runs it, plus
    ``--output-spaces``, then the group level by group. The end-to-end, template-space and
    mask tests read this one run: each full run costs minutes on 2 cores."""
    import hashlib
    import shutil
    from pathlib import Path

    from qsmflow.cli.run import main

    examples = Path(__file__).resolve().parents[1] / "bids_examples"

    def checksums(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    tmp = tmp_path_factory.mktemp("example_run")
    bids, out, work = tmp / "bids", tmp / "out", tmp / "work"
    shutil.copytree(examples, bids, ignore=shutil.ignore_patterns("derivatives", "*.py"))
    before = checksums(bids)
    participant = main([str(bids), str(out), "participant", "-w", str(work), "--nprocs", "2",
                        "--omp-nthreads", "1", "--output-spaces", "MNI152NLin2009aSym:res-1"])
    after_participant = checksums(bids)
    group = main([str(bids), str(out), "group", "--group-by", "group"])
    return {"code": participant, "group_code": group, "out": out, "work": work, "bids": bids,
            "before": before, "after_participant": after_participant,
            "after_group": checksums(bids)}
