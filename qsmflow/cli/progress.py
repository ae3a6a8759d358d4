"""One readable line per stage and run, from Nipype's status callback."""

from __future__ import annotations

import logging
import time

LOGGER = logging.getLogger("qsmflow")

# node name -> (stage label, function of the node's outputs giving the key number)
STAGES = {
    "prepare": ("load echoes", lambda o: ""),
    "mask": ("brain mask", lambda o: f"{o.volume_ml:.0f} ml"),
    "combine": ("echo fit", lambda o: (f"{o.n_echoes} echoes combined, " if o.n_echoes else
                                       "") + f"reference dTE {o.reference_dte_s * 1e3:.2f} ms"),
    "unwrap": ("unwrapping", lambda o: f"{o.n_excluded_voxels} unreliable phase voxels excluded"),
    "bgremove": ("background removal", lambda o: (
        f"V-SHARP radii {max(o.radii_mm):g}-{min(o.radii_mm):g} mm" if o.radii_mm else "LBV")
        + (", dipole-model refinement" if o.refined else "")),
    "invert": ("dipole inversion", lambda o: f"{o.method}, " + (
        f"{o.iterations} iterations" if o.iterations else "closed form")),
    "register_atlas": ("atlas registration", lambda o: f"similarity {o.similarity:.2f}"),
    "roi": ("ROI table", lambda o: ""),
    "ds_run": ("derivatives written", lambda o: ""),
}


class ProgressReporter:
    """Tracks node status per run workflow; use as Nipype's ``status_callback``."""

    def __init__(self, run_labels: dict[str, str]):
        self.run_labels = run_labels  # workflow name -> run label
        self.started: dict[str, float] = {}
        self.failed: dict[str, list[str]] = {}
        self.finished_sinks: set[str] = set()
        # run label -> {stage label: seconds} and {stage label: key number}, for the report
        self.timings: dict[str, dict[str, float]] = {}
        self.details: dict[str, dict[str, str]] = {}

    def _run_of(self, node) -> str | None:
        for part in node.fullname.split("."):
            if part in self.run_labels:
                return self.run_labels[part]
        return None

    def __call__(self, node, status, result=None):
        run = self._run_of(node)
        key = node.fullname
        if status == "start":
            self.started[key] = time.time()
            if node.name == "register_atlas" and run is not None:  # minutes of silence
                LOGGER.info("%s: atlas registration started", run)
            return
        if run is None:
            return
        if status == "exception":
            self.failed.setdefault(run, []).append(node.name)
            if node.name in STAGES:
                self.timings.setdefault(run, {})[STAGES[node.name][0]] = max(
                    time.time() - self.started.get(key, time.time()), 0.0)
                self.details.setdefault(run, {})[STAGES[node.name][0]] = "FAILED"
            LOGGER.error("%s: stage %s FAILED", run, STAGES.get(node.name, (node.name,))[0])
            return
        if status == "end":
            if key not in self.started and run in self.failed:
                return  # Linear reports the nodes it skipped after a failure as ended
            if node.name == "ds_run":
                self.finished_sinks.add(run)
            if node.name in STAGES:
                label, key_number = STAGES[node.name]
                elapsed = max(time.time() - self.started.get(key, time.time()), 0.0)
                try:
                    detail = key_number(node.result.outputs)
                except Exception:  # key numbers are informative only
                    detail = ""
                LOGGER.info("%s: %-20s %6.1f s  %s", run, label, elapsed, detail)
                self.timings.setdefault(run, {})[label] = elapsed
                self.details.setdefault(run, {})[label] = detail
