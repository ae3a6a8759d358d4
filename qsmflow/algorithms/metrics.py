"""Image-quality metrics of susceptibility maps, as used by the QSM reconstruction challenges.

References
----------
Langkammer C, Schweser F, Shmueli K, et al. Quantitative susceptibility mapping: report
from the 2016 reconstruction challenge. Magn Reson Med 2018;79:1661-1673 (NRMSE, HFEN).
QSM Challenge 2.0 Organization Committee, Bilgic B, Langkammer C, et al. QSM reconstruction
challenge 2.0. Magn Reson Med 2021;86:1241-1255 (XSIM).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HFEN_SIGMA_VOX = 1.5  # Laplacian-of-Gaussian width of the 2016 challenge
XSIM_K1, XSIM_K2, XSIM_RANGE_PPM = 0.01, 0.001, 1.0


def nrmse_percent(estimate, truth, mask) -> float:
    """``100 ||estimate - truth|| / ||truth||`` over the voxels of ``mask``.

    The one NRMSE of qsmflow: benchmarks, tests and NSIDL's training validation use it.
    """
    mask = np.asarray(mask, bool)
    estimate, truth = np.asarray(estimate), np.asarray(truth)
    return float(100 * np.linalg.norm((estimate - truth)[mask]) / np.linalg.norm(truth[mask]))


def hfen_percent(estimate, truth, mask) -> float:
    """NRMSE of the Laplacian-of-Gaussian filtered maps (high-frequency error norm)."""
    mask = np.asarray(mask, bool)
    log_e = ndimage.gaussian_laplace(estimate * mask, HFEN_SIGMA_VOX)
    log_t = ndimage.gaussian_laplace(truth * mask, HFEN_SIGMA_VOX)
    return nrmse_percent(log_e, log_t, mask)


def psnr_db(estimate, truth, mask) -> float:
    """Peak signal-to-noise ratio with the truth's range inside the mask as the peak."""
    mask = np.asarray(mask, bool)
    mse = np.mean((estimate - truth)[mask] ** 2)
    peak = truth[mask].max() - truth[mask].min()
    return float(10 * np.log10(peak**2 / mse))


def xsim(estimate, truth, mask, *, sigma_vox: float = 1.5) -> float:
    """Structural similarity adapted to QSM (XSIM): SSIM with K1=0.01, K2=0.001, L=1 ppm,
    computed on unclipped ppm values with a Gaussian window, averaged inside the mask."""
    mask = np.asarray(mask, bool)
    e, t = estimate * mask, truth * mask
    c1, c2 = (XSIM_K1 * XSIM_RANGE_PPM) ** 2, (XSIM_K2 * XSIM_RANGE_PPM) ** 2
    blur = lambda x: ndimage.gaussian_filter(x, sigma_vox)  # noqa: E731
    mu_e, mu_t = blur(e), blur(t)
    var_e = blur(e * e) - mu_e**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(e * t) - mu_e * mu_t
    ssim = ((2 * mu_e * mu_t + c1) * (2 * cov + c2)) / ((mu_e**2 + mu_t**2 + c1) *
                                                       (var_e + var_t + c2))
    return float(ssim[mask].mean())


def roi_regression(estimate, truth, labels, mask, label_ids) -> tuple[float, float]:
    """Slope and R^2 of the ROI means of ``estimate`` against those of ``truth``."""
    mask = np.asarray(mask, bool)
    pairs = [(truth[(labels == i) & mask].mean(), estimate[(labels == i) & mask].mean())
             for i in label_ids if ((labels == i) & mask).sum() > 0]
    x, y = np.array(pairs).T
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1 - residual.var() / y.var()
    return float(slope), float(r2)
