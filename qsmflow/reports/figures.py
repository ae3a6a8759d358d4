"""Static figures (matplotlib, Agg backend): registration quality."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _centre_slices(volume: np.ndarray, centre) -> list[np.ndarray]:
    i, j, k = centre
    return [volume[i, :, :].T, volume[:, j, :].T, volume[:, :, k].T]


def registration_figure(magnitude: np.ndarray, warped_template: np.ndarray, labels: np.ndarray,
                        out_png: str, *, title: str = "") -> str:
    """Magnitude with the registered template's outline (red) and the ROI labels.

    One row per view (sagittal, coronal, axial) through the centre of the labelled
    region: left, the template edges over the magnitude; right, the labels.
    """
    centre = (np.argwhere(labels > 0).mean(0).round().astype(int) if (labels > 0).any()
              else np.array(magnitude.shape) // 2)
    fig = Figure(figsize=(7.5, 10), dpi=90)
    FigureCanvasAgg(fig)
    vmax = np.percentile(magnitude[magnitude > 0], 99) if (magnitude > 0).any() else 1
    edge_level = np.percentile(warped_template[warped_template > 0], 50) \
        if (warped_template > 0).any() else 0.5
    for row, (mag, tpl, lab) in enumerate(zip(_centre_slices(magnitude, centre),
                                              _centre_slices(warped_template, centre),
                                              _centre_slices(labels, centre), strict=True)):
        ax = fig.add_subplot(3, 2, 2 * row + 1)
        ax.imshow(mag, cmap="gray", origin="lower", vmin=0, vmax=vmax)
        ax.contour(tpl, levels=[edge_level], colors="r", linewidths=0.6)
        ax.set_axis_off()
        ax = fig.add_subplot(3, 2, 2 * row + 2)
        ax.imshow(mag, cmap="gray", origin="lower", vmin=0, vmax=vmax)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap="tab20", origin="lower",
                  interpolation="nearest", alpha=0.7, vmin=1, vmax=20)
        ax.set_axis_off()
    fig.suptitle(title or "atlas registration: template outline (red) and labels")
    fig.tight_layout()
    fig.savefig(out_png)
    return out_png


# Slice mosaics of the participant report. Arrays come in RAS orientation (voxel axes
# ordered and flipped, not resampled, e.g. with nibabel.as_closest_canonical), so that
# every row shows the subject's left on the left (neurological convention).
VIEWS = (("axial", 2, ("L", "R")), ("coronal", 1, ("L", "R")), ("sagittal", 0, ("P", "A")))
MOSAIC_WIDTH_IN = 10.0
MOSAIC_DPI = 80
_GAP_VOX = 2


def _bounding_box(region: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) index of ``region`` along every axis; the whole axis if
    ``region`` is empty."""
    if not region.any():
        return [(0, n - 1) for n in region.shape]
    return [(int(np.flatnonzero(region.any(axis=tuple(a for a in range(region.ndim)
                                                      if a != axis)))[0]),
             int(np.flatnonzero(region.any(axis=tuple(a for a in range(region.ndim)
                                                      if a != axis)))[-1]))
            for axis in range(region.ndim)]


def slice_positions(region: np.ndarray, axis: int, n_slices: int) -> list[int]:
    """``n_slices`` evenly spaced slice indices strictly inside ``region`` along ``axis``."""
    first, last = _bounding_box(region)[axis]
    positions = np.linspace(first, last, n_slices + 2)[1:-1]
    return sorted({int(round(p)) for p in positions})


def _strip(volume: np.ndarray, axis: int, positions, crop, fill=np.nan) -> np.ndarray:
    """The slices at ``positions`` along ``axis``, cropped to ``crop`` (per-axis index
    ranges), side by side with gaps, rows being the higher of the two in-plane axes."""
    u, v = (a for a in range(3) if a != axis)
    pieces = []
    for k in positions:
        # basic indexing: a view of the slice (np.take copies it, 3 s per report at 1 mm)
        plane = volume[(slice(None),) * axis + (k,)].T  # rows: axis v, columns: axis u
        plane = plane[crop[v][0]:crop[v][1] + 1, crop[u][0]:crop[u][1] + 1]
        if pieces:
            pieces.append(np.full((plane.shape[0], _GAP_VOX), fill, dtype=float))
        pieces.append(plane.astype(float))
    return np.hstack(pieces)


def mosaic_figure(
    volume: np.ndarray,
    out_png: str,
    voxel_size_mm,
    *,
    vmin: float,
    vmax: float,
    cmap: str = "gray",
    region: np.ndarray | None = None,
    outline: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    label_names: dict | None = None,
    slices_within: np.ndarray | None = None,
    colorbar_label: str | None = None,
    title: str = "",
    n_slices: int = 6,
    margin_mm: float = 4.0,
) -> str:
    """Axial, coronal and sagittal rows of ``n_slices`` slices of a 3-D ``volume``.

    Parameters
    ----------
    volume
        3-D array in RAS orientation.
    out_png
        Where to write the PNG.
    voxel_size_mm
        Voxel size of the three axes (sets each row's aspect ratio).
    vmin, vmax
        Display window, in the image's units (fixed by the caller, not by this figure).
    region
        Voxels to show; the others are black and the slices are cropped around it
        (default: the non-zero voxels).
    outline
        Binary image drawn as a contour (e.g. the brain mask over the magnitude).
    labels, label_names
        Integer labels drawn in colour over the image, and ``{label: name}`` for the
        legend.
    slices_within
        Choose the slice positions inside this region, and crop the slices to it plus
        ``margin_mm`` (default: ``region``).
    colorbar_label
        Add a colour bar with this label (units).

    Returns
    -------
    str
        ``out_png``.
    """
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    volume = np.asarray(volume, float)
    if volume.ndim != 3:
        raise ValueError(f"mosaic_figure needs a 3-D volume, not shape {volume.shape}")
    voxel_size_mm = [float(v) for v in voxel_size_mm]
    region = (volume != 0) if region is None else np.asarray(region, bool)
    slices_within = region if slices_within is None else np.asarray(slices_within, bool)
    if not slices_within.any():
        slices_within = region
    crop = [(max(lo - margin, 0), min(hi + margin, n - 1))
            for (lo, hi), n, margin in zip(
                _bounding_box(slices_within), volume.shape,
                (int(np.ceil(margin_mm / v)) for v in voxel_size_mm), strict=True)]
    shown = np.where(region, volume, np.nan)
    colormap = colormaps[cmap].with_extremes(bad="black")

    rows = []
    for view, axis, ends in VIEWS:
        u, v = (a for a in range(3) if a != axis)
        positions = slice_positions(slices_within, axis, n_slices)
        strip = _strip(shown, axis, positions, crop)
        rows.append((view, ends, strip,
                     None if outline is None else _strip(outline, axis, positions, crop, 0),
                     None if labels is None else _strip(labels, axis, positions, crop, 0),
                     voxel_size_mm[v] / voxel_size_mm[u]))

    legend_ids = []
    if labels is not None:
        legend_ids = sorted(int(i) for i in np.unique(labels) if i > 0)
    left_in, right_in = 0.35, (1.05 if colorbar_label else 0.1)
    gap_in, title_in = 0.06, (0.35 if title else 0.05)
    legend_in = 0.22 * int(np.ceil(len(legend_ids) / 5)) + (0.1 if legend_ids else 0)
    width_in = MOSAIC_WIDTH_IN - left_in - right_in
    heights_in = [width_in * row[2].shape[0] * row[5] / row[2].shape[1] for row in rows]
    fig_h = title_in + sum(heights_in) + gap_in * (len(rows) + 1) + legend_in
    fig = Figure(figsize=(MOSAIC_WIDTH_IN, fig_h), dpi=MOSAIC_DPI, facecolor="black")
    FigureCanvasAgg(fig)
    label_cmap = label_norm = None
    if legend_ids:
        palette = colormaps["tab20"].colors
        colours = [palette[i % len(palette)] for i in range(len(legend_ids))]
        # One colour per label present, whatever the label numbers are.
        label_cmap = ListedColormap(colours)
        bounds = [legend_ids[0] - 0.5] + [i + 0.5 for i in legend_ids]
        label_norm = BoundaryNorm(bounds, label_cmap.N)
    top = fig_h - title_in
    image = None
    for (view, ends, strip, outline_strip, label_strip, aspect), h in zip(rows, heights_in,
                                                                      strict=True):
        top -= gap_in + h
        ax = fig.add_axes((left_in / MOSAIC_WIDTH_IN, top / fig_h,
                           width_in / MOSAIC_WIDTH_IN, h / fig_h))
        image = ax.imshow(strip, cmap=colormap, vmin=vmin, vmax=vmax, origin="lower",
                          aspect=aspect, interpolation="nearest")
        if outline_strip is not None and outline_strip.any():
            ax.contour(outline_strip, levels=[0.5], colors="#ff4040", linewidths=0.8)
        if label_strip is not None and label_cmap is not None:
            # A light fill to find the regions, an outline to judge their fit to chi.
            ax.imshow(np.ma.masked_where(label_strip <= 0, label_strip), cmap=label_cmap,
                      norm=label_norm, origin="lower", aspect=aspect, alpha=0.3,
                      interpolation="nearest")
            for i, lid in enumerate(legend_ids):
                if (label_strip == lid).any():
                    ax.contour(label_strip == lid, levels=[0.5], colors=[label_cmap(i)],
                               linewidths=0.9)
        ax.set_axis_off()
        ax.text(-0.004, 0.5, view, transform=ax.transAxes, rotation=90, ha="right",
                va="center", color="white", fontsize=9)
        for x, text, ha in ((0.003, ends[0], "left"), (0.997, ends[1], "right")):
            ax.text(x, 0.97, text, transform=ax.transAxes, ha=ha, va="top",
                    color="#ffd000", fontsize=8)
    if colorbar_label and image is not None:
        cax = fig.add_axes(((MOSAIC_WIDTH_IN - right_in + 0.15) / MOSAIC_WIDTH_IN,
                            (legend_in + gap_in + 0.1 * sum(heights_in)) / fig_h,
                            0.15 / MOSAIC_WIDTH_IN, 0.8 * sum(heights_in) / fig_h))
        bar = fig.colorbar(image, cax=cax)
        bar.set_label(colorbar_label, color="white", fontsize=9)
        bar.ax.tick_params(colors="white", labelsize=8)
        bar.outline.set_edgecolor("white")
    if legend_ids:
        names = label_names or {}
        handles = [Patch(color=label_cmap(i), label=names.get(lid, str(lid)))
                   for i, lid in enumerate(legend_ids)]
        fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False,
                   labelcolor="white", bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.text(0.5, 1 - 0.5 * title_in / fig_h, title, ha="center", va="center",
                 color="white", fontsize=11)
    fig.savefig(out_png, facecolor=fig.get_facecolor())
    return out_png
