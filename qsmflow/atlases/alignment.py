"""How well the default atlas's labels fit its template: the measurements of docs/atlases.md.

Run ``python -m qsmflow.atlases.alignment [--register]`` to print them as JSON. Three
measurements, none of which uses the labels' own construction:

* ``surface_offsets_mm``: a label set's cerebellum against the template's tissue
  (GM + WM > 0.5) on the cerebellum's free surfaces (inferior, posterior, left, right), as
  the signed distance along each grid line between the outermost label voxel and the
  outermost tissue voxel (positive: the labels reach beyond the tissue);
* ``midline_offsets_mm``: the mid-point in x of each left/right label pair; the template is
  symmetric, so a label set aligned to it has its pairs' mid-points at x = 0;
* ``deepgm_tissue``: the mean template GM and CSF (1 - GM - WM) probability inside each AAL3
  deep gray region (a region in the ventricle has CSF > 0).

``--register`` adds the correction experiment for AAL3: an ANTs registration (affine, then
SyN) of AAL3's cortex and cerebellum (deep gray labels left out) onto the template's GM map,
with the deep gray region masked out of the metric, so the deep gray measures above stay
held out. It takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings

import numpy as np
from scipy import ndimage

from .anatomy import (
    TEMPLATE_FILES,
    aal3_file,
    labels_on_grid,
    load_template_anatomy,
    suit_file,
)

AAL3_CEREBELLUM_IDS = tuple(range(95, 121))
AAL3_DEEPGM = {"caudate": (75, 76), "putamen": (77, 78), "globus_pallidus": (79, 80),
               "thalamus": tuple(range(121, 151)), "substantia_nigra": (161, 162, 163, 164),
               "red_nucleus": (165, 166)}
AAL3_PAIRS = {"caudate": (75, 76), "putamen": (77, 78), "globus_pallidus": (79, 80),
              "red_nucleus": (165, 166)}
SUIT_PAIRS = {"dentate_nucleus": (29, 30)}
TISSUE_THRESHOLD = 0.5


def _world(affine, shape):
    return np.stack(np.meshgrid(*[affine[k, k] * np.arange(shape[k]) + affine[k, 3]
                                  for k in range(3)], indexing="ij"))


def surface_offsets_mm(region: np.ndarray, tissue: np.ndarray, affine: np.ndarray) -> dict:
    """Signed offsets (median, 90th percentile of |offset|, lines) on four free surfaces.

    Lines are restricted to where the cerebellum is the outermost brain: inferior surface
    for |x| >= 20 mm and y < -50 mm (lateral to the brainstem), posterior for z < -30 mm,
    left/right for y < -55 mm and z < -30 mm; tissue above z = -15 mm is ignored.
    """
    x, y, z = _world(affine, region.shape)
    surfaces = {"inferior": (2, np.nanmin, (np.abs(x) >= 20) & (y < -50)),
                "posterior": (1, np.nanmin, z < -30),
                "left": (0, np.nanmin, (y < -55) & (z < -30)),
                "right": (0, np.nanmax, (y < -55) & (z < -30))}
    coordinate = (x, y, z)
    out = {}
    for name, (axis, extreme, lines) in surfaces.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # lines without any voxel
            r = extreme(np.where(region & lines, coordinate[axis], np.nan), axis=axis)
            t = extreme(np.where(tissue & lines & (z < -15), coordinate[axis], np.nan),
                        axis=axis)
        ok = np.isfinite(r) & np.isfinite(t)
        offset = (r - t)[ok] * (-1 if extreme is np.nanmin else 1)
        out[name] = {"median_mm": float(np.median(offset)),
                     "p90_abs_mm": float(np.percentile(np.abs(offset), 90)),
                     "lines": int(ok.sum())}
    return out


def midline_offsets_mm(labels: np.ndarray, affine: np.ndarray, pairs: dict) -> dict:
    """x mid-point (mm) of each left/right pair's centroids."""
    out = {}
    for name, (left, right) in pairs.items():
        xs = [(affine[:3, :3] @ np.argwhere(labels == lab).mean(0) + affine[:3, 3])[0]
              for lab in (left, right)]
        out[name] = round(float(np.mean(xs)), 2)
    return out


def deepgm_tissue(labels: np.ndarray, gm: np.ndarray, csf: np.ndarray) -> dict:
    """Mean template GM and CSF probability inside each AAL3 deep gray region."""
    return {name: {"gm": round(float(gm[np.isin(labels, ids)].mean()), 3),
                   "csf": round(float(csf[np.isin(labels, ids)].mean()), 3)}
            for name, ids in AAL3_DEEPGM.items()}


def register_aal3(aal3: np.ndarray, gm: np.ndarray, tissue: np.ndarray, affine, *,
                  n_threads: int = 2, seed: int = 1) -> dict:
    """AAL3 carried by an affine and by an affine + SyN registration (see module doc)."""
    import os

    import ants

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n_threads)
    deep_ids = sum(AAL3_DEEPGM.values(), ())

    def image(array):
        return ants.from_numpy(np.asarray(array, np.float32), origin=tuple(affine[:3, 3]),
                               spacing=tuple(np.diag(affine)[:3]))

    moving = image(ndimage.gaussian_filter(
        ((aal3 > 0) & ~np.isin(aal3, deep_ids)).astype(float), 1.0))
    held_out = ndimage.binary_dilation(np.isin(aal3, deep_ids), iterations=8)
    metric_mask = image(ndimage.binary_dilation(tissue, iterations=3) & ~held_out)
    out = {}
    for kind in ("Affine", "SyN"):
        # ANTs' transforms go to a folder removed afterwards, not left in /tmp.
        with tempfile.TemporaryDirectory(prefix="qsmflow_ants_") as tmp:
            result = ants.registration(image(gm), moving, type_of_transform=kind,
                                       mask=metric_mask, aff_metric="meansquares",
                                       syn_metric="meansquares", reg_iterations=(40, 20, 0),
                                       random_seed=seed, outprefix=f"{tmp}/")
            out[kind] = ants.apply_transforms(image(gm), image(aal3), result["fwdtransforms"],
                                              interpolator="genericLabel").numpy().astype(int)
    return out


def measure(register: bool = False) -> dict:
    """All measurements of the module docstring, as a JSON-ready dict."""
    template = load_template_anatomy()
    affine, shape = template.affine, template.t1.shape
    tissue = template.gm + template.wm > TISSUE_THRESHOLD
    csf = 1.0 - template.gm - template.wm
    aal3 = labels_on_grid(aal3_file(), affine, shape)
    suit = labels_on_grid(suit_file(), affine, shape)
    results = {
        "template": TEMPLATE_FILES["t1"],
        "suit_MNI152NLin2009cSym": {
            "surface_offsets": surface_offsets_mm(suit > 0, tissue, affine),
            "midline_offsets_mm": midline_offsets_mm(suit, affine, SUIT_PAIRS),
            "dentate_volume_ml": {str(lab): float((suit == lab).sum()) / 1000
                                  for lab in (29, 30)}},
        "aal3": {"surface_offsets": surface_offsets_mm(
                     np.isin(aal3, AAL3_CEREBELLUM_IDS), tissue, affine),
                 "midline_offsets_mm": midline_offsets_mm(aal3, affine, AAL3_PAIRS),
                 "deepgm_tissue": deepgm_tissue(aal3, template.gm, csf)},
    }
    if register:
        for kind, moved in register_aal3(aal3, template.gm, tissue, affine).items():
            shift = {name: np.round(
                np.argwhere(np.isin(moved, ids)).mean(0)
                - np.argwhere(np.isin(aal3, ids)).mean(0), 1).tolist()
                for name, ids in AAL3_DEEPGM.items()}
            results[f"aal3_registered_{kind}"] = {
                "centroid_shift_mm": shift,
                "midline_offsets_mm": midline_offsets_mm(moved, affine, AAL3_PAIRS),
                "deepgm_tissue": deepgm_tissue(moved, template.gm, csf)}
    return results


if __name__ == "__main__":
    print(json.dumps(measure(register="--register" in sys.argv[1:]), indent=1))
