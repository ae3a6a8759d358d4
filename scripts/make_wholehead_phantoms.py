"""Make whole-head phantom datasets (BIDS + ground truth) from the BrainWeb heads.

    python scripts/make_wholehead_phantoms.py OUT_DIR [--scan 18:straight 20:oblique]
        [--voxel-size-mm 1] [--b0-tesla 3] [--echo-times-ms 5 10 15 20 25] [--snr 100]
        [--seed 0] [--heads-dir ../shared/data/heads] [--cache-dir ~/.cache/qsmflow]

Each ``--scan SUBJECT:POSE`` is one participant ``sub-<SUBJECT><POSE>``; poses are those of
``qsmflow.simulation.wholehead.POSES_DEG``. The subject split (tuning / test / training) is
fixed in that module; the script refuses to mix splits in one dataset unless
``--allow-mixed-splits`` is given. The anatomy of each subject (registrations: about 2 min)
is cached in ``--cache-dir``. See ``qsmflow/simulation/wholehead.py`` for the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HEADS = REPO.parent / "shared" / "data" / "heads"


def parse_args(argv=None):
    from qsmflow.simulation.wholehead import POSES_DEG, TEST_SUBJECTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--scan", nargs="+", default=[f"{TEST_SUBJECTS[0]}:straight",
                                                 f"{TEST_SUBJECTS[1]}:oblique"],
                   metavar="SUBJECT:POSE", help=f"poses: {', '.join(POSES_DEG)}")
    p.add_argument("--voxel-size-mm", type=float, default=1.0)
    p.add_argument("--b0-tesla", type=float, default=3.0, choices=[3.0, 7.0])
    p.add_argument("--echo-times-ms", type=float, nargs="+",
                   help="default: 5 echoes, 5-25 ms at 3T, 4-20 ms at 7T")
    p.add_argument("--snr", type=float, default=100.0,
                   help="white matter first-echo magnitude over the noise sd (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads-dir", default=str(DEFAULT_HEADS))
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "qsmflow"))
    p.add_argument("--allow-mixed-splits", action="store_true")
    args = p.parse_args(argv)
    scans = []
    for item in args.scan:
        subject, _, pose = item.partition(":")
        if pose not in POSES_DEG:
            p.error(f"--scan {item}: pose must be one of {', '.join(POSES_DEG)}")
        scans.append((subject.zfill(2), pose))
    args.scans = scans
    return args


def main(argv=None) -> int:
    from qsmflow.simulation.wholehead import POSES_DEG, simulate
    from qsmflow.simulation.wholehead_anatomy import build_anatomy
    from qsmflow.simulation.wholehead_bids import split_of, write_dataset

    args = parse_args(argv)
    splits = {split_of(s) for s, _ in args.scans}
    if len(splits) > 1 and not args.allow_mixed_splits:
        print(f"error: the scans mix the splits {sorted(splits)}; make one dataset per split "
              "or give --allow-mixed-splits", file=sys.stderr)
        return 2
    te_s = None if args.echo_times_ms is None else [t / 1000 for t in args.echo_times_ms]
    scans = {}
    for k, (subject, pose) in enumerate(args.scans):
        start = time.perf_counter()
        anatomy = build_anatomy(args.heads_dir, subject, cache_dir=args.cache_dir,
                                seed=args.seed)
        scan = simulate(anatomy, b0_t=args.b0_tesla, te_s=te_s,
                        voxel_size_mm=args.voxel_size_mm, pose_deg=POSES_DEG[pose],
                        snr=args.snr, seed=args.seed * 1000 + k)
        scans[f"{subject}{pose}"] = (subject, pose, scan)
        print(f"sub-{subject}{pose}: {scan.magnitude.shape} at {args.voxel_size_mm:g} mm "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
        del anatomy
    write_dataset(Path(args.out_dir), scans)
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
