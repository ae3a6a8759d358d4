"""Voxel-wise group maps of chi in template space: mean and SD per group.

The participant level writes, with ``--output-spaces``, each scan's chi and QSM mask on a
template grid (``sub-*/[ses-*/]anat/*_space-<space>_res-<res>_Chimap.nii.gz`` and
``..._desc-qsm_mask.nii.gz``). Here each participant's scans are first averaged (where
their masks cover the voxel), so that every participant counts once, as in the ROI
statistics; then, per group, every voxel gets the mean and SD (n - 1) over the
participants whose mask covers it, and that number of participants. Voxels outside
every participant's mask are 0 with n = 0; the SD needs n >= 2 (0 otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qsmflow.bids.naming import group_filename, parse_label
from qsmflow.bids.nifti import open_nifti, read_nifti_data

TEMPLATE_CHIMAP_GLOB = "sub-*/**/anat/*_space-*_res-*_Chimap.nii.gz"
ALL_PARTICIPANTS = "all"  # the one group without --group-by


@dataclass
class GroupMaps:
    """Running sums of one group's participant maps (float64: the SD of values ~0.1 ppm
    from sums of squares keeps ~10 significant digits)."""

    sum_ppm: np.ndarray
    sum_sq_ppm2: np.ndarray
    count: np.ndarray
    participants: list[str] = field(default_factory=list)

    def add(self, participant_id: str, chi_ppm: np.ndarray, covered: np.ndarray) -> None:
        self.sum_ppm += np.where(covered, chi_ppm, 0.0)
        self.sum_sq_ppm2 += np.where(covered, chi_ppm ** 2, 0.0)
        self.count += covered
        self.participants.append(participant_id)

    def mean_sd_ppm(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.count.astype(np.float64)
        mean = np.divide(self.sum_ppm, n, out=np.zeros_like(self.sum_ppm), where=n > 0)
        ss = np.maximum(self.sum_sq_ppm2 - n * mean ** 2, 0.0)  # rounding can go below 0
        sd = np.sqrt(np.divide(ss, n - 1, out=np.zeros_like(ss), where=n > 1))
        return mean, sd


@dataclass(frozen=True)
class TemplateScan:
    participant_id: str
    session: str
    space: str
    res: str
    chimap: Path
    mask: Path


def find_template_scans(out_dir: Path) -> list[TemplateScan]:
    """Every template-space Chimap under ``out_dir`` with its mask beside it."""
    scans = []
    for chimap in sorted(Path(out_dir).glob(TEMPLATE_CHIMAP_GLOB)):
        entities = parse_label(chimap.name.removesuffix("_Chimap.nii.gz"))
        mask = chimap.with_name(chimap.name.replace("_Chimap.nii.gz", "_desc-qsm_mask.nii.gz"))
        if mask.is_file():
            scans.append(TemplateScan(f"sub-{entities['subject']}",
                                      entities.get("session", ""), entities["space"],
                                      entities["resolution"], chimap, mask))
    return scans


def _participant_map(scans: list[TemplateScan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean chi over a participant's scans where their masks cover a voxel; the affine."""
    total = covered = affine = None
    for scan in scans:
        image = open_nifti(scan.chimap)
        chi = read_nifti_data(image, scan.chimap)
        mask = read_nifti_data(open_nifti(scan.mask), scan.mask) > 0.5
        if total is None:
            total, covered, affine = np.zeros(chi.shape), np.zeros(chi.shape, int), image.affine
        elif chi.shape != total.shape or not np.allclose(image.affine, affine, atol=1e-4):
            raise ValueError(f"{scan.chimap} is not on the grid of the other "
                             f"space-{scan.space}_res-{scan.res} maps")
        total += np.where(mask, chi, 0.0)
        covered += mask
    mean = np.divide(total, covered, out=np.zeros_like(total), where=covered > 0)
    return mean, covered > 0, affine


def _desc(group: str) -> str:
    """A group's value as (the start of) a BIDS desc label: letters and digits only."""
    label = re.sub(r"[^0-9a-zA-Z]", "", str(group))
    if not label:
        raise ValueError(f"group {group!r} has no letter or digit for a file name")
    return label


def template_group_maps(out_dir: Path, groups: pd.Series | None, *, group_by: str | None,
                        participant_ids: set[str] | None = None
                        ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, dict]], list[str]]:
    """Mean, SD and count maps per group and template space, ready to write.

    Parameters
    ----------
    groups
        Group of each participant (index ``participant_id``); None: one group, ``all``.
    participant_ids
        Only these participants (all found when None).

    Returns
    -------
    ``{file name: (image data, affine, sidecar)}`` and notes on what was left out.
    """
    scans = [s for s in find_template_scans(out_dir)
             if participant_ids is None or s.participant_id in participant_ids]
    files: dict[str, tuple[np.ndarray, np.ndarray, dict]] = {}
    skipped: list[str] = []
    for space, res in sorted({(s.space, s.res) for s in scans}):
        in_space = [s for s in scans if (s.space, s.res) == (space, res)]
        sums: dict[str, GroupMaps] = {}
        affine = None
        for pid in sorted({s.participant_id for s in in_space}):
            group = ALL_PARTICIPANTS if groups is None else groups.get(pid)
            if group is None or pd.isna(group):
                skipped.append(f"{pid}: no {group_by} value; left out of the "
                               f"space-{space} group maps")
                continue
            chi, covered, affine = _participant_map([s for s in in_space
                                                     if s.participant_id == pid])
            if group not in sums:
                sums[group] = GroupMaps(np.zeros(chi.shape), np.zeros(chi.shape),
                                        np.zeros(chi.shape, np.int32))
            sums[group].add(pid, chi, covered)
        for group, maps in sums.items():
            mean, sd = maps.mean_sd_ppm()
            sidecar = {"GroupBy": group_by, "Group": str(group),
                       "N": len(maps.participants), "Participants": maps.participants,
                       "Space": space, "Resolution": f"res-{res}, as the participant maps",
                       "Sources": [f"bids::{s.chimap.relative_to(out_dir).as_posix()}"
                                   for s in in_space if s.participant_id in maps.participants]}
            entities = {"space": space, "res": res}
            for stat, data, extra in (
                    ("Mean", mean, {"Units": "ppm", "Description": "voxel-wise mean of chi "
                                    "over the participants whose QSM mask covers the voxel"}),
                    ("SD", sd, {"Units": "ppm", "Description": "voxel-wise SD (n - 1) of chi "
                                "over those participants; 0 where fewer than 2"}),
                    ("Count", maps.count, {"Units": "participants", "Description":
                                           "participants whose QSM mask covers the voxel"})):
                name = group_filename(dict(entities, description=f"{_desc(group)}{stat}"),
                                      "Chimap" if stat != "Count" else "count", ".nii.gz")
                if name in files:
                    raise ValueError(f"two {group_by} values give the file name {name}; "
                                     "make them differ in their letters or digits")
                files[name] = (data, affine, dict(sidecar, **extra))
    return files, skipped
