"""Interfaces for the GRE processing stages: preparation, echo fit, unwrap, background.

The brain mask node is in :mod:`qsmflow.interfaces.brainmask`.
"""

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

from qsmflow.algorithms.bgremove import (
    default_vsharp_radii_mm,
    lbv,
    refine_with_dipole_model,
    vsharp,
)
from qsmflow.algorithms.dipole import b0_direction_from_affine, voxel_size_from_affine
from qsmflow.algorithms.echo_combination import data_weight_from_noise, fit_echo_phase
from qsmflow.algorithms.fourier import fft_threads
from qsmflow.algorithms.unwrap import laplacian_unwrap, reliable_phase_mask
from qsmflow.bids.phase_units import (
    PHASE_SIGNS,
    PHASE_UNITS,
    phase_to_radians,
    polar_from_complex,
)

from .images import load_data, load_mask, save_like, work_image_path


class _PrepareGREInputSpec(BaseInterfaceInputSpec):
    magnitude_files = traits.List(File(exists=True), desc="one file per echo")
    phase_files = traits.List(File(exists=True), desc="one file per echo")
    real_files = traits.List(File(exists=True), desc="instead of magnitude and phase")
    imag_files = traits.List(File(exists=True), desc="instead of magnitude and phase")
    phase_units = traits.Enum(None, *PHASE_UNITS, usedefault=True,
                              desc="unit of the phase files (default: from their range)")
    phase_units_from = traits.Str("", usedefault=True, desc="where phase_units comes from")
    phase_sign = traits.Enum(*PHASE_SIGNS, usedefault=True,
                             desc="-1: the phase turns the other way")


class _PrepareGREOutputSpec(TraitedSpec):
    magnitude = File(exists=True, desc="4-D magnitude (echoes last)")
    phase_rad = File(exists=True, desc="4-D phase in rad")


class PrepareGRE(SimpleInterface):
    """Stack echoes into 4-D magnitude and phase (rad); non-finite voxels become 0.

    Phase files are converted by the unit of their convention
    (``bids.phase_units.phase_to_radians``); real and imaginary files through their
    complex value (``polar_from_complex``), never through a wrapped phase.
    """

    input_spec = _PrepareGREInputSpec
    output_spec = _PrepareGREOutputSpec

    def _echoes(self):
        """``(magnitude, phase_rad, affine)`` of each echo; NaN where not finite."""
        inputs = self.inputs
        if isdefined(inputs.real_files) and inputs.real_files:
            for real_file, imag_file in zip(inputs.real_files, inputs.imag_files,
                                            strict=True):
                real, affine = load_data(real_file)
                magnitude, phase = polar_from_complex(real, load_data(imag_file)[0])
                yield magnitude, phase, affine
            return
        for mag_file, phase_file in zip(inputs.magnitude_files, inputs.phase_files,
                                        strict=True):
            magnitude, affine = load_data(mag_file, dtype=np.float32)
            phase = phase_to_radians(load_data(phase_file, dtype=np.float32)[0],
                                     source=phase_file,
                                     units=inputs.phase_units,
                                     units_from=inputs.phase_units_from)
            yield np.abs(magnitude), phase, affine

    def _run_interface(self, runtime):
        mags, phases, affines = [], [], []
        for magnitude, phase, affine in self._echoes():
            finite = np.isfinite(magnitude) & np.isfinite(phase)
            mags.append(np.where(finite, magnitude, 0.0))
            phases.append(np.where(finite, self.inputs.phase_sign * phase, 0.0).astype(
                np.float32))
            affines.append(affine)
        if not mags:
            raise ValueError("PrepareGRE needs magnitude_files and phase_files, or "
                             "real_files and imag_files")
        affine = affines[0]
        self._results["magnitude"] = save_like(np.stack(mags, -1), affine,
                                               work_image_path("magnitude"))
        self._results["phase_rad"] = save_like(np.stack(phases, -1), affine,
                                               work_image_path("phase_rad"))
        return runtime


class _CombineEchoesInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True)
    phase_rad = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    echo_times_s = traits.List(traits.Float, mandatory=True)


class _CombineEchoesOutputSpec(TraitedSpec):
    wrapped_phase_rad = File(exists=True, desc="offset-free phase over reference_dte_s")
    reference_dte_s = traits.Float()
    noise_std_hz = File(exists=True)
    noise_is_absolute = traits.Bool(desc="noise_std_hz in Hz (else relative)")
    weight = File(exists=True, desc="data weight W in [0, 1]")
    n_echoes = traits.Int(desc="echoes combined")


class CombineEchoes(SimpleInterface):
    """Magnitude-weighted complex fit of frequency and phase offset over echoes."""

    input_spec = _CombineEchoesInputSpec
    output_spec = _CombineEchoesOutputSpec

    def _run_interface(self, runtime):
        magnitude, affine = load_data(self.inputs.magnitude, dtype=np.float32)
        phase, _ = load_data(self.inputs.phase_rad, dtype=np.float32)
        mask = load_mask(self.inputs.mask)
        fit = fit_echo_phase(magnitude, phase, self.inputs.echo_times_s, mask)
        self._results["wrapped_phase_rad"] = save_like(
            fit.wrapped_phase_rad, affine, work_image_path("wrapped_phase_rad"))
        self._results["reference_dte_s"] = fit.reference_dte_s
        self._results["noise_std_hz"] = save_like(fit.noise_std_hz, affine,
                                                  work_image_path("noise_std_hz"))
        self._results["noise_is_absolute"] = fit.noise_is_absolute
        self._results["weight"] = save_like(data_weight_from_noise(fit.noise_std_hz, mask),
                                            affine, work_image_path("weight"))
        self._results["n_echoes"] = len(self.inputs.echo_times_s)
        return runtime


def _volume_and_mask(volume_path, mask_path):
    """A 3-D volume, its mask, the affine and the voxel size (mm) from the affine."""
    volume, affine = load_data(volume_path)
    return volume, load_mask(mask_path), affine, voxel_size_from_affine(affine)


class _UnwrapInputSpec(BaseInterfaceInputSpec):
    wrapped_phase_rad = File(exists=True, mandatory=True)
    reference_dte_s = traits.Float(mandatory=True)
    mask = File(exists=True, mandatory=True)
    n_threads = traits.Int(1, usedefault=True, desc="FFT threads (the node's n_procs)")


class _UnwrapOutputSpec(TraitedSpec):
    total_field_hz = File(exists=True)
    reliable_mask = File(exists=True, desc="mask without unreliable phase voxels")
    n_excluded_voxels = traits.Int(desc="voxels at phase residues or near-pi differences")


class UnwrapPhase(SimpleInterface):
    """Laplacian unwrapping inside the mask; the phase becomes a field map in Hz.

    Voxels at phase residues or near-pi neighbour differences (aliasing next to air and
    bone, noise in dark vessels) are taken out of the mask handed on to background
    removal, so that they cannot leak into it (``reliable_phase_mask``).
    """

    input_spec = _UnwrapInputSpec
    output_spec = _UnwrapOutputSpec

    def _run_interface(self, runtime):
        wrapped, mask, affine, voxel_size = _volume_and_mask(self.inputs.wrapped_phase_rad,
                                                             self.inputs.mask)
        reliable, n_excluded = reliable_phase_mask(wrapped, mask)
        with fft_threads(self.inputs.n_threads):
            unwrapped = laplacian_unwrap(wrapped, voxel_size, mask=reliable)
        field_hz = unwrapped / (2 * np.pi * self.inputs.reference_dte_s)
        field_hz = (field_hz - np.median(field_hz[reliable])) * mask
        self._results["total_field_hz"] = save_like(field_hz, affine,
                                                    work_image_path("total_field_hz"))
        self._results["reliable_mask"] = save_like(reliable, affine,
                                                   work_image_path("reliable_mask"),
                                                   dtype=np.uint8)
        self._results["n_excluded_voxels"] = n_excluded
        return runtime


class _RemoveBackgroundInputSpec(BaseInterfaceInputSpec):
    total_field_hz = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    radii_mm = traits.List(traits.Float, desc="kernel radii (default: QSM.jl's rule)")
    threshold = traits.Float(0.05, usedefault=True)
    method = traits.Enum("lbv", "vsharp", usedefault=True, desc="background removal method")
    lbv_peel_mm = traits.Float(0.0, usedefault=True, desc="LBV: layers peeled off first")
    refine = traits.Bool(True, usedefault=True,
                         desc="correct with the field of a first susceptibility estimate")
    refine_model = traits.Enum("cfl2", "nsidl", usedefault=True,
                               desc="the refinement's first estimate: CFL2 or NSIDL")
    b0_t = traits.Float(desc="NSIDL first estimate: field strength (T)")
    echo_times_s = traits.List(traits.Float, desc="NSIDL first estimate: echo times (s)")
    weight = File(exists=True, desc="NSIDL first estimate: data weight W in [0, 1]")
    weights_path = File(exists=True, desc="NSIDL first estimate: weights (default: shipped)")
    device = traits.Enum("cpu", "cuda", usedefault=True)
    n_threads = traits.Int(1, usedefault=True, desc="FFT threads (the node's n_procs)")


class _RemoveBackgroundOutputSpec(TraitedSpec):
    local_field_hz = File(exists=True)
    eroded_mask = File(exists=True)
    radii_mm = traits.List(traits.Float)
    refined = traits.Bool(desc="whether the dipole-model refinement ran")


class RemoveBackground(SimpleInterface):
    """Background field removal: LBV (default) or V-SHARP (``method="vsharp"``).

    With ``refine`` (default) it runs as ``refine_with_dipole_model``: a second pass on
    what the field of a first susceptibility estimate does not explain.
    """

    input_spec = _RemoveBackgroundInputSpec
    output_spec = _RemoveBackgroundOutputSpec

    def _run_interface(self, runtime):
        field_hz, mask, affine, voxel_size = _volume_and_mask(self.inputs.total_field_hz,
                                                              self.inputs.mask)
        if self.inputs.method == "lbv":
            radii = []

            def remove(field, region):
                return lbv(field, region, voxel_size, peel_mm=self.inputs.lbv_peel_mm)
        else:
            radii = (list(self.inputs.radii_mm) if isdefined(self.inputs.radii_mm) and
                     self.inputs.radii_mm else default_vsharp_radii_mm(voxel_size).tolist())

            def remove(field, region):
                return vsharp(field, region, voxel_size, radii_mm=radii,
                              threshold=self.inputs.threshold)
        with fft_threads(self.inputs.n_threads):
            if self.inputs.refine:
                local, eroded = refine_with_dipole_model(
                    remove, field_hz, mask, voxel_size, b0_direction_from_affine(affine),
                    first_estimate=self._nsidl_estimate(affine, voxel_size)
                    if self.inputs.refine_model == "nsidl" else None)
            else:
                local, eroded = remove(field_hz, mask)
        self._results["local_field_hz"] = save_like(local, affine,
                                                    work_image_path("local_field_hz"))
        self._results["eroded_mask"] = save_like(eroded, affine,
                                                 work_image_path("eroded_mask"),
                                                 dtype=np.uint8)
        self._results["radii_mm"] = [float(r) for r in radii]
        self._results["refined"] = bool(self.inputs.refine)
        return runtime

    def _nsidl_estimate(self, affine, voxel_size):
        """The refinement's first estimate by the run's own NSIDL (Hz in, chi in Hz out)."""
        from functools import partial

        from qsmflow.inversion import chi_in_field_units

        if not isdefined(self.inputs.b0_t) or not self.inputs.echo_times_s:
            raise ValueError("the NSIDL first estimate needs b0_t and echo_times_s")
        return partial(
            chi_in_field_units, voxel_size_mm=voxel_size,
            b0_direction=b0_direction_from_affine(affine), b0_t=self.inputs.b0_t,
            te_s=float(np.mean(self.inputs.echo_times_s)), method="nsidl",
            weight=load_data(self.inputs.weight)[0] if isdefined(self.inputs.weight) else None,
            weights_path=self.inputs.weights_path if isdefined(self.inputs.weights_path)
            else None, device=self.inputs.device, n_threads=self.inputs.n_threads)
