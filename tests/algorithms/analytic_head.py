"""A small analytic head for background-removal tests: known chi, exactly harmonic background.

The brain is a lumpy ellipsoid with a CSF rim, a cortical shell, white matter, ventricles, deep gray
nuclei and veins (susceptibilities relative to CSF, in ppm, as in
``qsmflow.simulation.phantom``). The background is the analytic field of spheres outside
the brain (air sinuses and mastoids at +9.41 ppm against tissue, petrous bone, a chain of
venous spheres standing for the superior sagittal sinus) plus shim terms: it is harmonic
inside the brain to machine precision, whatever the grid. The local field is the field
of ``(chi - mean(chi[brain])) * brain``, whose mean can never be recovered (a uniform
susceptibility filling the mask makes a field that is harmonic inside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsmflow.algorithms.dipole import forward_field_ppm
from qsmflow.constants import AIR_MINUS_TISSUE_CHI_PPM

BRAIN_SEMI_AXES_MM = (62.0, 76.0, 54.0)
CORTEX_THICKNESS_MM = 3.0
CSF_RIM_MM = 2.0  # subarachnoid CSF inside the mask, as in a brain mask from magnitude
CHI_PPM = {"gm": 0.02, "wm": -0.03, "csf": 0.0, "caudate": 0.06, "putamen": 0.05,
           "globus_pallidus": 0.16, "thalamus": 0.01, "substantia_nigra": 0.13,
           "red_nucleus": 0.10, "vein": 0.35, "bone": -2.0}
# (name, centre mm, semi-axes mm) relative to the brain centre; x left-right, y back-front.
NUCLEI = [("caudate", (-12, 14, 8), (4, 10, 6)), ("caudate", (12, 14, 8), (4, 10, 6)),
          ("putamen", (-24, 4, 0), (5, 12, 8)), ("putamen", (24, 4, 0), (5, 12, 8)),
          ("globus_pallidus", (-18, 0, -2), (3, 7, 5)), ("globus_pallidus", (18, 0, -2), (3, 7, 5)),
          ("thalamus", (-9, -14, 4), (7, 11, 7)), ("thalamus", (9, -14, 4), (7, 11, 7)),
          ("substantia_nigra", (-9, -16, -16), (3, 6, 3)),
          ("substantia_nigra", (9, -16, -16), (3, 6, 3)),
          ("red_nucleus", (-5, -18, -12), (3, 3, 3)), ("red_nucleus", (5, -18, -12), (3, 3, 3)),
          ("csf", (-8, 4, 14), (5, 20, 7)), ("csf", (8, 4, 14), (5, 20, 7))]
# Exterior spheres: (centre mm, radius mm, chi relative to tissue in ppm).
EXTERIOR_SPHERES = [((0, 84, -20), 12.0, AIR_MINUS_TISSUE_CHI_PPM),  # frontal sinus
                    ((0, 40, -68), 14.0, AIR_MINUS_TISSUE_CHI_PPM),  # sphenoid sinus
                    ((-58, -28, -52), 9.0, AIR_MINUS_TISSUE_CHI_PPM),  # mastoids
                    ((58, -28, -52), 9.0, AIR_MINUS_TISSUE_CHI_PPM),
                    ((-40, -20, -56), 8.0, CHI_PPM["bone"]),  # petrous bone
                    ((40, -20, -56), 8.0, CHI_PPM["bone"])]


@dataclass(frozen=True)
class AnalyticHead:
    chi_ppm: np.ndarray
    brain: np.ndarray
    local_field_ppm: np.ndarray  # field of (chi - mean) * brain
    background_ppm: np.ndarray
    total_field_ppm: np.ndarray
    magnitude: np.ndarray  # proton density with dark veins, 0 outside the head
    voxel_size_mm: np.ndarray
    b0_direction: np.ndarray  # in voxel coordinates
    affine: np.ndarray  # voxel index -> head mm


def _sphere_field(points_mm, centre_mm, radius_mm, dchi_ppm, b0):
    """Exact field (ppm) of a uniform sphere: dchi/3 (a/r)^3 (3 cos^2 - 1) outside, 0 inside."""
    d = points_mm - np.asarray(centre_mm, float).reshape(3, 1, 1, 1)
    r = np.sqrt((d**2).sum(0))
    cos_t = np.einsum("i,i...->...", b0, d) / np.maximum(r, 1e-9)
    outside = dchi_ppm / 3 * (radius_mm / np.maximum(r, radius_mm)) ** 3 * (3 * cos_t**2 - 1)
    return np.where(r > radius_mm, outside, 0.0)


def make_head(
    voxel_size_mm=(2.0, 2.0, 2.0),
    *,
    b0_direction=(0.0, 0.0, 1.0),
    field_of_view_mm=(164.0, 196.0, 148.0),
    rng: np.random.Generator | None = None,
    affine: np.ndarray | None = None,
) -> AnalyticHead:
    """Sample the analytic head on a grid (optionally an oblique one, through ``affine``).

    With ``affine`` (voxel index -> head mm, the head centred at the origin), the head is
    sampled at those points. ``b0_direction`` is in head coordinates; the returned
    ``b0_direction`` is the same direction in voxel coordinates.
    """
    rng = rng or np.random.default_rng(7)
    vsz = np.asarray(voxel_size_mm, float)
    shape = tuple(int(round(f / h)) for f, h in zip(field_of_view_mm, vsz, strict=False))
    if affine is None:
        affine = np.diag(list(vsz) + [1.0])
        affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * vsz
    ijk = np.indices(shape, dtype=np.float64)
    points = np.einsum("ij,j...->i...", affine[:3, :3], ijk) + affine[:3, 3].reshape(3, 1, 1, 1)
    x, y, z = points
    b0 = np.asarray(b0_direction, float) / np.linalg.norm(b0_direction)  # head frame
    u, _, vt = np.linalg.svd(affine[:3, :3])
    b0_voxel = (u @ vt).T @ b0  # the same direction in voxel coordinates

    # A lumpy ellipsoid: the radius varies with direction by low-order harmonics.
    a, b, c = BRAIN_SEMI_AXES_MM
    rho = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    theta = np.arctan2(np.sqrt(x**2 + y**2), z)
    phi = np.arctan2(y, x)
    lumps = 1.0 + 0.04 * np.cos(3 * phi) * np.sin(theta) + 0.05 * np.cos(2 * theta) \
        + 0.03 * np.sin(5 * phi + 1.0) * np.sin(theta) ** 2
    depth_mm = (lumps - rho) * min(a, b, c)  # approximate distance inside the surface
    brain = depth_mm > 0

    chi = np.zeros(shape)
    # CSF rim, then cortex, then white matter, with a 2 mm partial-volume ramp between them.
    tissue = np.clip((depth_mm - CSF_RIM_MM) / 2.0 + 0.5, 0, 1)
    gm_fraction = np.clip(1.0 - (depth_mm - CSF_RIM_MM - CORTEX_THICKNESS_MM) / 2.0, 0, 1)
    chi[brain] = (tissue * (gm_fraction * CHI_PPM["gm"] + (1 - gm_fraction) * CHI_PPM["wm"])
                  + (1 - tissue) * CHI_PPM["csf"])[brain]
    for name, centre, axes in NUCLEI:
        inside = sum(((p - ce) / ax) ** 2
                     for p, ce, ax in zip(points, centre, axes, strict=True)) <= 1
        chi[inside & brain] = CHI_PPM[name]
    veins = np.zeros(shape, bool)
    for _ in range(10):  # cortical veins: short tubes just under the surface
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        start = direction * np.array([a, b, c]) * rng.uniform(0.75, 0.9)
        axis = np.cross(direction, rng.normal(size=3))
        axis /= np.linalg.norm(axis)
        d = points - start.reshape(3, 1, 1, 1)
        along = np.einsum("i,i...->...", axis, d)
        radial = np.sqrt(np.maximum((d**2).sum(0) - along**2, 0))
        veins |= (np.abs(along) < 15) & (radial < rng.uniform(1.0, 1.8))
    chi[veins & brain] = CHI_PPM["vein"]
    chi *= brain

    background = np.zeros(shape)
    for centre, radius, dchi in EXTERIOR_SPHERES:
        background += _sphere_field(points, centre, radius, dchi, b0)
    for k in range(12):  # superior sagittal sinus: venous spheres above the brain
        angle = np.deg2rad(-70 + 140 * k / 11)
        centre = (0.0, (b + 7) * np.sin(angle), (c + 7) * np.cos(angle))
        background += _sphere_field(points, centre, 3.0, CHI_PPM["vein"], b0)
    # Shim residuals: a constant, linear and second-order harmonic terms (ppm over ~100 mm).
    background += 0.3 + 0.4 * x / 100 - 0.3 * y / 100 + 0.5 * (x**2 - z**2) / 100**2 \
        + 0.4 * x * y / 100**2

    local = forward_field_ppm((chi - chi[brain].mean()) * brain, vsz, b0_voxel)
    total = forward_field_ppm(chi, vsz, b0_voxel) + background
    head = rho < lumps * 1.25
    magnitude = np.where(head, 1.0, 0.0) * np.where(veins, 0.3, 1.0) * \
        np.where(chi > 0.04, 0.7, 1.0)
    return AnalyticHead(chi, brain, local, background, total, magnitude, vsz, b0_voxel,
                        affine)


def nrmse_local_field(estimate, truth, region) -> float:
    """||e - mean(e)|| / ||t - mean(t)|| over ``region``: the constant is never recoverable."""
    error = estimate[region] - truth[region]
    reference = truth[region] - truth[region].mean()
    return float(np.linalg.norm(error - error.mean()) / np.linalg.norm(reference))


def nrmse_free_reference(estimate, truth, region, uniform_field) -> float:
    """NRMSE after fitting the susceptibility reference and a constant.

    Susceptibility is only known relative to a reference, and the field of a uniform
    susceptibility filling the mask (``uniform_field``, the field of ``brain * 1 ppm``) is
    harmonic inside it: no background removal can tell it from the background. The error
    is therefore taken after the least-squares fit of ``a + c * uniform_field``.
    """
    error = estimate[region] - truth[region]
    basis = np.stack([np.ones(error.size), uniform_field[region]], 1)
    coef = np.linalg.lstsq(basis, error, rcond=None)[0]
    reference = truth[region] - truth[region].mean()
    return float(np.linalg.norm(error - basis @ coef) / np.linalg.norm(reference))
