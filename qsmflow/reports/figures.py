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
                                              _centre_slices(labels, centre))):
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
