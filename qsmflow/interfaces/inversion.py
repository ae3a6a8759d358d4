"""Interface for the dipole inversion (NSIDL in PyTorch, or a classical method)."""

from __future__ import annotations

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmflow.algorithms.dipole import b0_direction_from_affine, voxel_size_from_affine
from qsmflow.algorithms.fourier import fft_threads
from qsmflow.constants import hz_per_ppm
from qsmflow.inversion import INVERSION_METHODS, invert_local_field

from .images import load_data, load_mask, save_like, work_image_path


class _InversionInputSpec(BaseInterfaceInputSpec):
    local_field_hz = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    weight = File(exists=True, desc="data weight W in [0, 1]")
    noise_std_hz = File(exists=True, desc="the field's noise sd (echo fit)")
    noise_is_absolute = traits.Bool(False, usedefault=True,
                                    desc="noise_std_hz is in Hz; a relative map is not used")
    b0_t = traits.Float(mandatory=True)
    echo_times_s = traits.List(traits.Float, mandatory=True)
    method = traits.Enum(*INVERSION_METHODS, usedefault=True)
    weights_path = File(exists=True, desc="NSIDL weights (default: shipped)")
    device = traits.Enum("cpu", "cuda", usedefault=True)
    n_threads = traits.Int(1, usedefault=True)


class _InversionOutputSpec(TraitedSpec):
    chi_ppm = File(exists=True)
    local_field_ppm = File(exists=True)
    method = traits.Str()
    iterations = traits.Int(desc="iterations run (0: closed form)")
    weights_sha256 = traits.Str()
    b0_direction = traits.List(traits.Float)
    effective_te_s = traits.Float()


class DipoleInversion(SimpleInterface):
    """Local field (Hz) -> susceptibility (ppm), with B0 taken from the image affine.

    The effective echo time of the nonlinear data term is the mean echo time.
    """

    input_spec = _InversionInputSpec
    output_spec = _InversionOutputSpec

    def _run_interface(self, runtime):
        field_hz, affine = load_data(self.inputs.local_field_hz)
        mask = load_mask(self.inputs.mask)
        weight = load_data(self.inputs.weight)[0] if isdefined(self.inputs.weight) else None
        b0_dir = b0_direction_from_affine(affine)
        te_eff = float(np.mean(self.inputs.echo_times_s))
        field_ppm = field_hz / hz_per_ppm(self.inputs.b0_t)
        noise_sd_ppm = None  # a noise-conditioned NSIDL then assumes noise-free data
        if isdefined(self.inputs.noise_std_hz) and self.inputs.noise_is_absolute:
            noise_sd_ppm = load_data(self.inputs.noise_std_hz)[0] / hz_per_ppm(self.inputs.b0_t)
        with fft_threads(self.inputs.n_threads):
            result = invert_local_field(
                field_ppm, mask, voxel_size_from_affine(affine), b0_dir,
                method=self.inputs.method, b0_t=self.inputs.b0_t, te_s=te_eff, weight=weight,
                noise_sd_ppm=noise_sd_ppm,
                weights_path=self.inputs.weights_path if isdefined(self.inputs.weights_path)
                else None, device=self.inputs.device, n_threads=self.inputs.n_threads)
        self._results["chi_ppm"] = save_like(result.chi_ppm, affine, work_image_path("chi_ppm"))
        self._results["local_field_ppm"] = save_like(field_ppm * mask, affine,
                                                     work_image_path("local_field_ppm"))
        self._results["method"] = result.method
        self._results["iterations"] = result.iterations
        self._results["weights_sha256"] = result.weights_sha256 or ""
        self._results["b0_direction"] = [float(x) for x in b0_dir]
        self._results["effective_te_s"] = te_eff
        return runtime
