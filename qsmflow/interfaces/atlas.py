"""Atlas registration with ANTsPy: template -> native GRE magnitude, labels carried over."""

from __future__ import annotations

import shutil

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from .images import load_data, load_mask, output_path, save_like, work_image_path
from .template_space import template_labels_to_native

# Fast settings for 2 cores: a shortened affine stage (ANTsPy's default runs 2100
# iterations at the coarsest level), then SyN at 1/4 and 1/2 resolution. On the bundled
# example these keep the label Dice of the default settings (see tests/interfaces).
AFFINE_ITERATIONS = (500, 250, 100, 0)
AFFINE_SHRINK_FACTORS = (8, 4, 2, 1)
AFFINE_SMOOTHING_SIGMAS = (3, 2, 1, 0)
SYN_ITERATIONS = (40, 20, 0)
# Finer scans are registered on a 2 mm grid with the same levels in mm (the finest level
# above has no iterations). On the 1 mm whole-head test heads (BrainWeb 18 straight, 20
# oblique) this more than halves the CPU time (156 -> 70 s, 170 -> 75 s) at the same mean
# Dice of the 14 native labels against the true nuclei (0.828 -> 0.827, 0.840 -> 0.842);
# single labels move by -0.026..+0.049, both ways (the left red nucleus loses most).
REGISTRATION_VOXEL_MM = 2.0
COARSE_GRID_SETTINGS = dict(reg_iterations=(40, 20), aff_iterations=(500, 250, 100),
                            aff_shrink_factors=(4, 2, 1), aff_smoothing_sigmas=(2, 1, 0))
# On that 2 mm grid the fixed image is cropped to its brain (the masked magnitude's
# non-zero box) plus 10 mm: the registration's cost is per voxel of the fixed image, and
# the head's background only fills the metric's histogram. Chosen on tuning heads 04
# straight and 05 oblique (3 seeds each, against the full settings on the 1 mm grid):
# 16-18 s against 22-24 s uncropped and 66 s full; mean Dice +0.004 / +0.005 against full,
# no label worse than -0.008 (uncropped: -0.028, the right pallidum). On the test heads
# (18, 20) the mean moves by -0.003 / +0.003, and over the four heads no label by more
# than -0.009 on average. Scans of 1.5 mm and coarser keep the full settings (their call
# takes about 9 s). benchmarks/bench_registration_settings.py, results
# registration_crop_tuning, _test, _examples and _pooled (docs/benchmarks.md).
REGISTRATION_CROP_MARGIN_MM = 10.0


def _register_in_child(fixed_path: str, template_path: str, seed: int,
                       outprefix: str) -> tuple[list[str], list[str]]:
    import ants

    fixed, moving = ants.image_read(fixed_path), ants.image_read(template_path)
    fixed, moving, settings = _registration_grid(ants, fixed, moving)
    # SyNRA: rigid, then affine, then SyN.
    result = ants.registration(fixed, moving, type_of_transform="SyNRA", random_seed=seed,
                               outprefix=outprefix, **settings)
    return list(result["fwdtransforms"]), list(result["invtransforms"])


_CHILD = ("import json, sys; from qsmflow.interfaces.atlas import _register_in_child; "
          "print(json.dumps(_register_in_child(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
          "sys.argv[4])))")


def register_template(fixed_path: str, template_path: str, *, n_threads: int, seed: int,
                      outprefix: str) -> tuple[list[str], list[str]]:
    """ANTs' SyNRA of the template to ``fixed_path``: (forward, inverse) transform files.

    It runs in a fresh Python process. ITK reads ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS once
    per process, at its first use, and ignores later changes; in a reused Nipype worker,
    or after any earlier ANTs call, ``n_threads`` would not hold (measured: an SyNRA after
    a one-thread call ran single-threaded, 69 s wall for 69 s CPU, with the variable at
    2; in a fresh process 47 s wall for 84 s CPU). The transforms go to ``outprefix``, not
    to the system temporary folder, which ANTsPy would never clean.
    """
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(n_threads))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(fixed_path), str(template_path),
                           str(seed), str(outprefix)], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the ANTs registration of {template_path} to {fixed_path} "
                           f"failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    forward, inverse = json.loads(done.stdout.strip().splitlines()[-1])
    return forward, inverse


class _RegisterAtlasInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True, desc="4-D magnitude; echo 1 is used")
    mask = File(exists=True, mandatory=True, desc="brain mask in the native grid")
    template = File(exists=True, mandatory=True)
    labels = File(exists=True, mandatory=True)
    n_threads = traits.Int(1, usedefault=True)
    random_seed = traits.Int(20251125, usedefault=True)


class _RegisterAtlasOutputSpec(TraitedSpec):
    native_labels = File(exists=True)
    affine_xfm = File(exists=True, desc="template -> native affine (ANTs .mat)")
    warp_xfm = File(exists=True, desc="template -> native SyN warp")
    inverse_warp_xfm = File(exists=True, desc="SyN's inverse warp, for native -> template "
                            "after the inverted affine")
    warped_template = File(exists=True)
    similarity = traits.Float(desc="normalised cross-correlation of template and magnitude")


def _save_warp(path: str, out_path: str) -> str:
    """Copy ANTs' displacement field (x, y, z, 1, 3) with a 1 in the spacing of its time
    and vector dimensions, which ANTs leaves 0 (the BIDS validator warns of NIFTI_PIXDIM);
    ANTs reads only the spatial spacing, so the transform is unchanged."""
    import nibabel as nib

    img = nib.load(path)
    zooms = img.header.get_zooms()
    img.header.set_zooms(tuple(z if i < 3 or z > 0 else 1.0 for i, z in enumerate(zooms)))
    nib.save(img, out_path)
    return out_path


class RegisterAtlas(SimpleInterface):
    """Register the template to the brain-masked first-echo magnitude (rigid+affine+SyN).

    Labels go into the native grid with ANTs' generic-label interpolation, never linear
    (``template_labels_to_native``, as every other template mask). SyN's inverse warp is
    kept too, for chi in template space (``ResampleToTemplate``).
    """

    input_spec = _RegisterAtlasInputSpec
    output_spec = _RegisterAtlasOutputSpec

    def _run_interface(self, runtime):
        import os

        import ants

        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.inputs.n_threads)
        magnitude, affine = load_data(self.inputs.magnitude)
        mask = load_mask(self.inputs.mask)
        fixed_path = save_like(magnitude[..., 0] * mask, affine, work_image_path("fixed"))
        fixed = ants.image_read(fixed_path)
        moving = ants.image_read(self.inputs.template)
        forward, inverse = register_template(fixed_path, self.inputs.template,
                                             n_threads=self.inputs.n_threads,
                                             seed=self.inputs.random_seed,
                                             outprefix=output_path("ants_"))
        warp, affine_xfm = forward[0], forward[-1]
        self._results["warp_xfm"] = _save_warp(warp, work_image_path("template_to_native_warp"))
        self._results["inverse_warp_xfm"] = _save_warp(
            inverse[-1], work_image_path("native_to_template_warp"))
        self._results["affine_xfm"] = shutil.copy(affine_xfm,
                                                  output_path("template_to_native_affine.mat"))
        labels = template_labels_to_native(self.inputs.labels, fixed,
                                           self._results["affine_xfm"],
                                           self._results["warp_xfm"])
        self._results["native_labels"] = save_like(labels * mask, affine,
                                                   work_image_path("native_labels"),
                                                   dtype=np.int16)
        warped = ants.apply_transforms(fixed, moving, forward).numpy()
        self._results["warped_template"] = save_like(warped, affine,
                                                     work_image_path("warped_template"))
        fixed_values, warped_values = fixed.numpy()[mask], warped[mask]
        self._results["similarity"] = float(np.corrcoef(fixed_values, warped_values)[0, 1])
        return runtime


def crop_to_foreground(ants, image, margin_mm: float):
    """``image`` cropped to the box of its non-zero voxels plus ``margin_mm`` on each side
    (clipped to the image), in the same physical space."""
    nonzero = np.argwhere(image.numpy() != 0)
    if nonzero.size == 0:
        return image
    shape = np.array(image.shape)
    margin_vox = np.ceil(margin_mm / np.asarray(image.spacing)).astype(int)
    low = np.maximum(nonzero.min(0) - margin_vox, 0)
    high = np.minimum(nonzero.max(0) + margin_vox, shape - 1)
    box = np.zeros(image.shape, np.float32)
    box[tuple(slice(lo, hi + 1) for lo, hi in zip(low, high, strict=True))] = 1
    return ants.crop_image(image, image.new_image_like(box), 1)


def _registration_grid(ants, fixed, moving, crop_margin_mm=REGISTRATION_CROP_MARGIN_MM):
    """The images and settings to register on: the native ones (the full settings), or,
    when the scan is finer than 1.5 mm, both on a ``REGISTRATION_VOXEL_MM`` grid with the
    fixed image cropped to its brain plus ``crop_margin_mm`` (None: not cropped)."""
    if min(fixed.spacing) >= 0.75 * REGISTRATION_VOXEL_MM:
        return fixed, moving, dict(reg_iterations=SYN_ITERATIONS,
                                   aff_iterations=AFFINE_ITERATIONS,
                                   aff_shrink_factors=AFFINE_SHRINK_FACTORS,
                                   aff_smoothing_sigmas=AFFINE_SMOOTHING_SIGMAS)
    grid = (REGISTRATION_VOXEL_MM,) * 3
    fixed = ants.resample_image(fixed, grid, use_voxels=False, interp_type=0)
    moving = ants.resample_image(moving, grid, use_voxels=False, interp_type=0)
    if crop_margin_mm is not None:
        fixed = crop_to_foreground(ants, fixed, crop_margin_mm)
    return fixed, moving, COARSE_GRID_SETTINGS


class _RegistrationFigureInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True)
    warped_template = File(exists=True, mandatory=True)
    labels = File(exists=True, mandatory=True)
    title = traits.Str("", usedefault=True)


class _RegistrationFigureOutputSpec(TraitedSpec):
    figure = File(exists=True)


class RegistrationFigure(SimpleInterface):
    input_spec = _RegistrationFigureInputSpec
    output_spec = _RegistrationFigureOutputSpec

    def _run_interface(self, runtime):
        from qsmflow.reports.figures import registration_figure

        magnitude = load_data(self.inputs.magnitude)[0][..., 0]
        self._results["figure"] = registration_figure(
            magnitude, load_data(self.inputs.warped_template)[0],
            np.rint(load_data(self.inputs.labels)[0]).astype(int),
            output_path("registration.png"), title=self.inputs.title)
        return runtime
