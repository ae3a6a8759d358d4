"""The v2 data of one training run: the bank split into training and in-distribution
validation volumes, and the held-out sphere patches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .bank import load_bank
from .heldout import sphere_batches
from .synthetic_v2 import collate, draw_patch, prepare, sample_batch_v2

HELDOUT = "heldout_spheres"  # labels of the validation sets in the training log
IN_DISTRIBUTION = "indist_bank"


def split_volumes(volumes) -> tuple[list, list]:
    """Training volumes, and the last volume of each anatomy kind (BrainWeb, MNI) kept out
    for in-distribution validation (same generator: never called held-out)."""
    kinds = {}
    for i, v in enumerate(volumes):
        kinds.setdefault(v.source.rstrip("0123456789"), []).append(i)
    keep_out = {idx[-1] for idx in kinds.values() if len(idx) > 1}
    return ([v for i, v in enumerate(volumes) if i not in keep_out],
            [v for i, v in enumerate(volumes) if i in keep_out])


class V2Data:
    def __init__(self, bank_dir: Path, *, seed: int, n_validation: int, patch: int,
                 clean_fraction: float = 0.0):
        self.bank_dir = Path(bank_dir)
        self.clean_fraction = clean_fraction
        volumes = load_bank(self.bank_dir)
        train, val = split_volumes(volumes)
        self.train_sources = [v.source for v in train]
        self.val_sources = [v.source for v in val]
        self.prepared = prepare(train)
        val_prepared = prepare(val)
        rng = np.random.default_rng(seed)
        patches = [draw_patch(val_prepared[i % len(val_prepared)], rng, patch,
                              clean_fraction=clean_fraction)
                   for i in range(n_validation)] if val_prepared else []
        self.validation = {
            HELDOUT: sphere_batches(seed + 1, n_validation, patch),
            IN_DISTRIBUTION: [collate(patches[i:i + 2]) for i in range(0, len(patches), 2)]}
        if not patches:
            del self.validation[IN_DISTRIBUTION]

    def sample(self, rng, *, batch_size: int, patch: int):
        return sample_batch_v2(self.prepared, rng, batch_size=batch_size, patch=patch,
                               clean_fraction=self.clean_fraction)

    def describe(self) -> dict:
        manifest = json.loads((self.bank_dir / "manifest.json").read_text())
        return {"manifest": manifest, "training_volumes": self.train_sources,
                "in_distribution_validation_volumes": self.val_sources}
