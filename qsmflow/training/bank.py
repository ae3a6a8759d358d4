"""The NSIDL v2 training bank: whole-head anatomies simulated on a 0.5 mm grid, reduced to 1 mm.

Each bank volume is one draw of one anatomy: a strong smooth nonlinear deformation with a
left-right asymmetry, broadly sampled tissue susceptibilities with a texture, and a random
B0 direction relative to the head. Its field is the *continuous* dipole kernel applied on
the 0.5 mm grid (``wholehead_kspace.continuous_dipole_field_ppm``) and reduced to 1 mm by
cropping k-space (``kspace_reduce``); the truth chi is reduced the same way. So the field
the network sees is never its own discrete kernel applied to its own chi.

Anatomies: the BrainWeb heads of the training split only (:data:`TRAINING_SUBJECTS`; the
code refuses the test and tuning heads) and the MNI head models of v1's generator
(``qsmflow.simulation.phantom``), upsampled to 0.5 mm before the physics.

Run ``python -m qsmflow.training.bank --out DIR`` (see ``--help``); the bank is a cache
(regenerable, never committed): one ``vol_*.npz`` per volume and ``manifest.json``.

References
----------
Marques JP, Meineke J, Milovic C, et al. QSM reconstruction challenge 2.0. Magn Reson Med
2021;86:526-542 (fine-grid simulation, k-space reduction).
Cognolato F, et al. NeXtQSM. Med Image Anal 2023;84:102700 (hybrid training data).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from qsmflow.files import atomic_write, atomic_write_text
from qsmflow.simulation import wholehead_anatomy as wa
from qsmflow.simulation.wholehead import TEST_SUBJECTS, TRAINING_SUBJECTS, TUNING_SUBJECTS
from qsmflow.simulation.wholehead_kspace import (
    continuous_dipole_field_ppm,
    fraction_reduce,
    kspace_reduce,
)

BANK_VERSION = "1"
FINE_VOXEL_MM = wa.FINE_VOXEL_MM  # 0.5 mm physics grid
REDUCTION = 2  # bank grid: 1.0 mm
BOX_MARGIN_MM = 8.0  # around the brain: room for dilated masks and the field outside
FIELD_PAD_MM = 12.0  # zero padding of the fine FFT (no wrap-around of the brain's field)
MAX_B0_TILT_DEG = 35.0  # B0 relative to the head's z axis
DEFORM_MM = (2.0, 7.0)  # amplitude range of the smooth displacement
DEFORM_CONTROL = 5  # control points per axis of the displacement (~30 mm wavelength)
ASYMMETRY = 0.08  # up to 8 % larger/smaller left hemisphere
TEXTURE_MM = 2.0  # correlation length of the susceptibility texture
# Broad tissue susceptibility ranges (ppm vs CSF), wider than literature +- 35 %.
CHI_RANGE_PPM = {wa.GM: (-0.01, 0.07), wa.WM: (-0.08, 0.01), wa.VESSELS: (0.1, 0.6),
                 wa.CSF: (-0.01, 0.01)}
NUCLEUS_RANGE_PPM = (0.0, 0.25)
HEMISPHERE_SPREAD = 0.25  # each hemisphere's nucleus differs by up to 25 %
TEXTURE_SD_PPM = (0.0, 0.025)


@dataclass(frozen=True)
class TissueProfile:
    """How one bank draws the brain's susceptibilities.

    Profile "1" (NSIDL v2's bank): GM and WM drawn independently from
    :data:`CHI_RANGE_PPM` (GM less than 0.015 ppm above WM in about 8 % of draws), under a
    texture of up to 0.025 ppm sd at 2 mm, in many draws stronger than the GM-WM contrast,
    and which no field determines. Measured on the tuning head (BrainWeb 04, its true
    local field): a network trained on it smooths the cortex away (NRMSE 57 % against
    TKD's 39 % at step 1260; see ``training_runs/nsidl_v2/README.md``).
    Profile "2": WM drawn from ``wm_range_ppm`` and GM above it by ``gm_minus_wm_ppm``
    (the sign of every 3T report: GM paramagnetic to WM, e.g. Deistung 2013, Li 2011;
    the range three times the literature's spread), texture at most ``texture_sd_ppm``.
    """

    name: str
    texture_sd_ppm: tuple[float, float]
    gm_minus_wm_ppm: tuple[float, float] | None = None  # None: GM drawn on its own
    wm_range_ppm: tuple[float, float] = CHI_RANGE_PPM[wa.WM]


PROFILES = {"1": TissueProfile("1", TEXTURE_SD_PPM),
            "2": TissueProfile("2", (0.0, 0.008), gm_minus_wm_ppm=(0.015, 0.10),
                               wm_range_ppm=(-0.08, 0.0))}
DEFAULT_PROFILE = "2"
# M0 and R2* (1/s at 3T) by BrainWeb label; nuclei: R2* rises ~190 1/s per ppm.
M0 = {wa.CSF: 1.0, wa.GM: 0.82, wa.WM: 0.70, wa.VESSELS: 0.85}
R2STAR_3T_HZ = {wa.CSF: 4.0, wa.GM: 16.0, wa.WM: 20.0, wa.VESSELS: 45.0}
R2STAR_PER_PPM_3T = 190.0


class SplitError(ValueError):
    """A subject outside the training split was asked for."""


def check_training_subject(subject: str) -> str:
    """The subject if it is in the training split; refuse test and tuning heads."""
    subject = f"{int(subject):02d}"
    if subject in TEST_SUBJECTS or subject in TUNING_SUBJECTS:
        raise SplitError(f"BrainWeb subject {subject} is a test or tuning head "
                         f"(test {TEST_SUBJECTS}, tuning {TUNING_SUBJECTS}): never trained on.")
    if subject not in TRAINING_SUBJECTS:
        raise SplitError(f"BrainWeb subject {subject} is not in the training split "
                         f"{TRAINING_SUBJECTS}.")
    return subject


@dataclass(frozen=True)
class BankVolume:
    """One simulated volume on the 1 mm bank grid (axes x, y, z)."""

    chi_ppm: np.ndarray  # truth: chi of the brain, reduced in k-space
    field_ppm: np.ndarray  # field of the brain's sources (everywhere), reduced in k-space
    brain: np.ndarray  # bool: more than half of the voxel is brain
    m0: np.ndarray  # partial-volume mean of the steady-state magnitude term
    r2star_3t_hz: np.ndarray
    b0_direction: np.ndarray  # voxel coordinates (the bank grid is the head's)
    voxel_size_mm: float
    source: str

    def save(self, path: Path) -> None:
        atomic_write(path, lambda tmp: np.savez(
            tmp, chi_ppm=self.chi_ppm, field_ppm=self.field_ppm, brain=self.brain,
            m0=self.m0.astype(np.float16), r2star_3t_hz=self.r2star_3t_hz.astype(np.float16),
            b0_direction=self.b0_direction, voxel_size_mm=self.voxel_size_mm,
            source=self.source))

    @classmethod
    def load(cls, path: Path) -> BankVolume:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["chi_ppm"], z["field_ppm"], z["brain"], z["m0"].astype(np.float32),
                       z["r2star_3t_hz"].astype(np.float32), z["b0_direction"],
                       float(z["voxel_size_mm"]), str(z["source"]))


def reduced_field_ppm(chi_fine_ppm, fine_voxel_mm: float, b0_direction, factor: int, *,
                      pad_vox: int, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Field (continuous kernel on the fine grid) and chi, both reduced by ``factor`` in
    k-space. Output voxel ``j`` is centred on fine voxel ``factor * j``."""
    field = continuous_dipole_field_ppm(chi_fine_ppm, fine_voxel_mm, b0_direction,
                                        pad_vox=pad_vox, workers=workers)
    field = kspace_reduce(field, factor, workers=workers)
    return field, kspace_reduce(chi_fine_ppm, factor, workers=workers)


def random_b0_direction(rng, max_tilt_deg: float = MAX_B0_TILT_DEG) -> np.ndarray:
    tilt = np.deg2rad(rng.uniform(0.0, max_tilt_deg))
    azimuth = rng.uniform(0.0, 2 * np.pi)
    return np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth),
                     np.cos(tilt)])


def smooth_noise(shape, rng, correlation_vox: float) -> np.ndarray:
    """Unit-variance smooth Gaussian noise, drawn coarse and interpolated (float32)."""
    step = max(int(round(correlation_vox)), 1)
    coarse_shape = [max(n // step + 2, 2) for n in shape]
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 0.8)
    coarse /= coarse.std() + 1e-12
    zoom = [n / c for n, c in zip(shape, coarse_shape, strict=True)]
    return ndimage.zoom(coarse, zoom, order=1, grid_mode=True, mode="nearest")[
        tuple(slice(0, n) for n in shape)]


def deformation_coordinates(shape, voxel_mm: float, rng) -> np.ndarray:
    """Pull-back coordinates (3, X, Y, Z), float32, of a smooth random deformation with a
    left-right asymmetry (one hemisphere scaled about the midline) and an anisotropic
    global scaling."""
    amplitude_vox = rng.uniform(*DEFORM_MM) / voxel_mm
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, np.float32) - 1) / 2
    scale = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    asym = np.float32(rng.uniform(-ASYMMETRY, ASYMMETRY))
    for axis in range(3):
        c = np.float32(centre[axis])
        grid[axis] = c + (grid[axis] - c) * scale[axis]
        coarse = rng.standard_normal((DEFORM_CONTROL,) * 3).astype(np.float32)
        zoom = [n / DEFORM_CONTROL for n in shape]
        disp = ndimage.zoom(coarse, zoom, order=3, grid_mode=True, mode="nearest")
        grid[axis] += np.float32(amplitude_vox / 2) * disp[:shape[0], :shape[1], :shape[2]]
    left = grid[0] < centre[0]
    grid[0][left] = centre[0] + (grid[0][left] - centre[0]) * (1 + asym)
    return grid


def _even_box(mask, margin_vox: int):
    where = np.argwhere(mask)
    lo = np.maximum(where.min(0) - margin_vox, 0)
    hi = where.max(0) + 1 + margin_vox
    size = hi - lo
    size += size % (2 * REDUCTION)  # divisible by the reduction
    return tuple(slice(int(a), int(a + s)) for a, s in zip(lo, size, strict=True))


def brainweb_fine_maps(anatomy, rng, profile: TissueProfile = PROFILES["1"]):
    """chi (ppm), brain, M0 and R2* (3T) of one BrainWeb draw on the fine grid (brain box)."""
    from qsmflow.simulation.anatomy import deepgm_labels

    box = _even_box(anatomy.brain, int(BOX_MARGIN_MM / FINE_VOXEL_MM))
    shape = tuple(s.stop - s.start for s in box)
    pad = [(0, max(s.stop - n, 0)) for s, n in zip(box, anatomy.brain.shape, strict=True)]
    coords = deformation_coordinates(shape, FINE_VOXEL_MM, rng)

    def warp(a):
        cropped = np.pad(a[box], pad)[tuple(slice(0, n) for n in shape)]
        return ndimage.map_coordinates(cropped, coords, order=0, mode="constant")

    tissue, deepgm = warp(anatomy.tissue), warp(anatomy.deepgm)
    brain = warp(anatomy.brain.astype(np.uint8)).astype(bool)
    lut_chi, lut_m0, lut_r2 = (np.zeros(256, np.float32) for _ in range(3))
    for label, (lo, hi) in CHI_RANGE_PPM.items():
        lut_chi[label] = rng.uniform(lo, hi)  # profile 1 keeps all four (its RNG stream)
        lut_m0[label], lut_r2[label] = M0[label], R2STAR_3T_HZ[label]
    if profile.gm_minus_wm_ppm is not None:
        lut_chi[wa.WM] = rng.uniform(*profile.wm_range_ppm)
        lut_chi[wa.GM] = lut_chi[wa.WM] + rng.uniform(*profile.gm_minus_wm_ppm)
    chi, m0, r2s = lut_chi[tissue], lut_m0[tissue], lut_r2[tissue]
    texture_sd = rng.uniform(*profile.texture_sd_ppm)
    chi += np.float32(texture_sd) * smooth_noise(shape, rng, TEXTURE_MM / FINE_VOXEL_MM) * \
        np.isin(tissue, (wa.GM, wa.WM))
    base = {}
    for lab in deepgm_labels():
        base.setdefault(lab.roi, rng.uniform(*NUCLEUS_RANGE_PPM))
        value = base[lab.roi] * (1 + rng.uniform(-HEMISPHERE_SPREAD, HEMISPHERE_SPREAD))
        where = deepgm == lab.index
        chi[where] = value
        m0[where] = 0.78
        r2s[where] = R2STAR_3T_HZ[wa.GM] + R2STAR_PER_PPM_3T * max(value, 0.0)
    return chi * brain, brain, m0, r2s


def mni_fine_maps(model, rng):
    """The same maps for an MNI head model (1 mm), upsampled to the fine grid and deformed."""
    box = _even_box(model.brain, int(BOX_MARGIN_MM))  # model grid is 1 mm
    up = int(round(1.0 / FINE_VOXEL_MM))
    shape = tuple((s.stop - s.start) * up for s in box)
    coords = deformation_coordinates(shape, FINE_VOXEL_MM, rng)
    # Fine voxel i lies at model voxel i / up - (up - 1) / (2 up) (cell-centred upsampling).
    offset = np.array([s.start for s in box], np.float32) - (up - 1) / (2 * up)
    for axis in range(3):
        coords[axis] = coords[axis] / up + offset[axis]

    def warp(a, order):
        return ndimage.map_coordinates(np.asarray(a, np.float32), coords, order=order,
                                       mode="constant")

    brain = warp(model.brain, 1) > 0.5
    chi = warp(model.chi_ppm, 1) * brain
    pd = warp(model.proton_density, 1)
    r2s = warp(model.r2star_hz, 1)
    return chi, brain, pd, r2s


def simulate_volume(chi_fine, brain_fine, m0_fine, r2s_fine, b0_direction, source: str, *,
                    workers: int = 2) -> BankVolume:
    """Reduce one fine-grid draw to the bank grid (see module docstring)."""
    field, chi = reduced_field_ppm(chi_fine, FINE_VOXEL_MM, b0_direction, REDUCTION,
                                   pad_vox=int(FIELD_PAD_MM / FINE_VOXEL_MM), workers=workers)
    brain = fraction_reduce(brain_fine, REDUCTION) > 0.5
    m0 = fraction_reduce(m0_fine, REDUCTION)
    r2s = fraction_reduce(r2s_fine, REDUCTION)
    return BankVolume(chi * brain, field, brain, m0, r2s, np.asarray(b0_direction, float),
                      FINE_VOXEL_MM * REDUCTION, source)


def build_bank(out: Path, *, heads_dir: Path, subjects, draws_per_subject: int, n_mni: int,
               seed: int, cache_dir: Path, workers: int = 2,
               profile: str = DEFAULT_PROFILE) -> list[str]:
    """Write the bank's volumes (skipping those already there) and its manifest."""
    from qsmflow.training.synthetic import random_head_models

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tissue_profile = PROFILES[profile]
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        recorded = json.loads(manifest_path.read_text()).get("tissue_profile", "1")
        if recorded != profile:
            raise ValueError(f"{out} holds a bank of tissue profile {recorded}; asked for "
                             f"{profile}. Use another --out, or --profile {recorded}.")
    subjects = [check_training_subject(s) for s in subjects]
    names = []
    for subject in subjects:
        anatomy = None
        for draw in range(draws_per_subject):
            name = f"vol_brainweb{subject}_d{draw}.npz"
            names.append(name)
            if (out / name).is_file():
                continue
            started = time.time()
            anatomy = anatomy or wa.build_anatomy(heads_dir, subject, cache_dir=cache_dir)
            rng = np.random.default_rng([seed, int(subject), draw])
            maps = brainweb_fine_maps(anatomy, rng, tissue_profile)
            simulate_volume(*maps, random_b0_direction(rng), f"brainweb{subject}",
                            workers=workers).save(out / name)
            print(f"{name} {time.time() - started:.0f}s", flush=True)
    if n_mni:
        models = random_head_models(seed, n_mni)  # v1's MNI generator, this seed
        for i, model in enumerate(models):
            name = f"vol_mni_s{seed}_{i}.npz"
            names.append(name)
            if (out / name).is_file():
                continue
            started = time.time()
            rng = np.random.default_rng([seed, 1000 + i])
            maps = mni_fine_maps(model, rng)
            simulate_volume(*maps, random_b0_direction(rng), f"mni{i}",
                            workers=workers).save(out / name)
            print(f"{name} {time.time() - started:.0f}s", flush=True)
    manifest = {"bank_version": BANK_VERSION, "seed": seed, "subjects": subjects,
                "draws_per_subject": draws_per_subject, "n_mni": n_mni, "volumes": names,
                "fine_voxel_mm": FINE_VOXEL_MM, "reduction": REDUCTION,
                "tissue_profile": profile}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return names


def load_bank(path: Path) -> list[BankVolume]:
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    for source in manifest["subjects"]:
        check_training_subject(source)
    return [BankVolume.load(Path(path) / name) for name in manifest["volumes"]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qsmflow.training.bank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--heads-dir", type=Path, default=Path("../shared/data/heads"))
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "qsmflow")
    p.add_argument("--subjects", nargs="*", default=["41", "42", "43", "44"])
    p.add_argument("--draws-per-subject", type=int, default=2)
    p.add_argument("--n-mni", type=int, default=4)
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
                   help="tissue susceptibility profile (TissueProfile; NSIDL v2's bank: 1)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    build_bank(args.out, heads_dir=args.heads_dir, subjects=args.subjects,
               draws_per_subject=args.draws_per_subject, n_mni=args.n_mni, seed=args.seed,
               cache_dir=args.cache_dir, workers=args.workers, profile=args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
