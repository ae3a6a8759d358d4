"""The brain mask node: deepbet + R2* (default), deepbet alone, the threshold, or the user's."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmflow.algorithms.brain_extraction import (
    DEFAULT_ERODE_MM,
    MASK_METHODS,
    r2star_loglinear,
    remove_outer_csf,
)
from qsmflow.algorithms.dipole import voxel_size_from_affine
from qsmflow.algorithms.masking import brain_mask, erode_mask
from qsmflow.bids.errors import QSMInputError

from .images import load_data, save_like, work_image_path


def deepbet_native(magnitude: np.ndarray, affine: np.ndarray, *, device: str = "cpu",
                   n_threads: int = 1) -> np.ndarray:
    """deepbet's mask of a 3-D image in its own grid (deepbet wants RAS-ordered axes)."""
    from qsmflow.dl.brain_extraction import deepbet_mask

    ornt = nib.io_orientation(affine)
    ras = nib.orientations.apply_orientation(magnitude, ornt)
    mask_ras = deepbet_mask(ras, device=device, n_threads=n_threads)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    return nib.orientations.apply_orientation(mask_ras, back).astype(bool)


def compute_brain_mask(magnitude: np.ndarray, affine: np.ndarray, *, method: str,
                       te_s=(), threshold: float | None = None,
                       erode_mm: float | None = None, device: str = "cpu",
                       n_threads: int = 1, source: str = "the magnitude") -> np.ndarray:
    """The mask of ``method`` (``MASK_METHODS``) from a 4-D magnitude (echoes last).

    The one code path of the node and of ``benchmarks/bench_brain_mask.py``.
    """
    voxel_size = voxel_size_from_affine(affine)
    erode_mm = DEFAULT_ERODE_MM[method] if erode_mm is None else erode_mm
    if method == "threshold":
        kwargs = {"erode_mm": erode_mm}
        if threshold is not None:
            kwargs["threshold"] = threshold
        return brain_mask(magnitude[..., 0], voxel_size, **kwargs)
    te_s = list(te_s)
    if method == "deepbet" and (len(te_s) < 2 or magnitude.shape[-1] != len(te_s)):
        raise QSMInputError(
            f"--mask-method deepbet removes the CSF under the skull by its R2*, which "
            f"needs at least two echoes, but {source} has {magnitude.shape[-1]} echo(es) "
            f"for {len(te_s)} echo time(s). Use --mask-method deepbet-intracranial (keeps "
            "that CSF) or threshold.")
    mask = deepbet_native(magnitude[..., 0], affine, device=device, n_threads=n_threads)
    if method == "deepbet":
        mask = remove_outer_csf(mask, r2star_loglinear(magnitude, te_s, mask), voxel_size,
                                first_echo=magnitude[..., 0])
    return erode_mask(mask, erode_mm, voxel_size) if erode_mm > 0 else mask


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True, desc="4-D magnitude, echoes last")
    echo_times_s = traits.List(traits.Float, desc="echo times (s): R2* for 'deepbet'")
    user_mask = File(exists=True, desc="use this mask instead of computing one")
    method = traits.Enum(*MASK_METHODS, usedefault=True, desc="how the mask is made")
    threshold = traits.Float(desc="threshold method: fraction of the robust maximum")
    erode_mm = traits.Float(desc="final erosion in mm (default: the method's)")
    device = traits.Str("cpu", usedefault=True)
    n_threads = traits.Int(1, usedefault=True)


class _BrainMaskOutputSpec(TraitedSpec):
    mask = File(exists=True)
    volume_ml = traits.Float()


class BrainMask(SimpleInterface):
    """Brain mask of one GRE run (see ``MASK_METHODS``), or the user's checked for its grid.

    deepbet segments the first-echo magnitude; with ``method="deepbet"`` the voxels of
    CSF-like R2* in the outer shell of that mask are then removed
    (:func:`qsmflow.algorithms.brain_extraction.remove_outer_csf`).
    """

    input_spec = _BrainMaskInputSpec
    output_spec = _BrainMaskOutputSpec

    def _run_interface(self, runtime):
        magnitude, affine = load_data(self.inputs.magnitude)
        if magnitude.ndim == 3:
            magnitude = magnitude[..., None]
        voxel_size = voxel_size_from_affine(affine)
        method = self.inputs.method
        problem = "the mask is empty"
        if isdefined(self.inputs.user_mask):
            mask = load_data(self.inputs.user_mask)[0] > 0.5
            problem = f"the mask {self.inputs.user_mask} from --brain-mask-dir is empty"
        else:
            try:
                mask = compute_brain_mask(
                    magnitude, affine, method=method,
                    te_s=list(self.inputs.echo_times_s)
                    if isdefined(self.inputs.echo_times_s) else [],
                    threshold=self.inputs.threshold if isdefined(self.inputs.threshold)
                    else None,
                    erode_mm=self.inputs.erode_mm if isdefined(self.inputs.erode_mm) else None,
                    device=self.inputs.device, n_threads=self.inputs.n_threads,
                    source=self.inputs.magnitude)
            except QSMInputError:
                raise
            except ValueError as err:
                mask, problem = None, str(err)
        if mask is None or not mask.any():
            n_signal = int(np.count_nonzero(magnitude[..., 0]))
            raise QSMInputError(
                f"no brain mask ({method}): {problem}. The first-echo magnitude "
                f"{self.inputs.magnitude} has signal in {n_signal} of "
                f"{magnitude[..., 0].size} voxels. Check the magnitude images (their "
                "scaling, or a wrong echo), try another --mask-method (or, with the threshold "
                "method, another --mask-threshold), or give your own masks with "
                "--brain-mask-dir.")
        self._results["mask"] = save_like(mask, affine, work_image_path("brain_mask"),
                                          dtype=np.uint8)
        self._results["volume_ml"] = float(mask.sum() * np.prod(voxel_size) / 1000.0)
        return runtime
