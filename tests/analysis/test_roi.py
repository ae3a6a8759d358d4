import numpy as np
import pytest
from scipy import ndimage

from qsmflow.analysis.roi import ROI_COLUMNS, RegionLabel, eroded_region, roi_table

REGIONS = [RegionLabel(1, "caudate", "left"), RegionLabel(2, "putamen", "left"),
           RegionLabel(3, "red_nucleus", "left")]


def test_roi_statistics_of_piecewise_chi(rng):
    labels = np.zeros((30, 30, 30), int)
    labels[5:15, 5:15, 5:15] = 1
    labels[15:25, 5:15, 5:15] = 2
    chi = np.where(labels == 1, 0.06, np.where(labels == 2, 0.05, 0.0))
    chi = chi + rng.normal(scale=0.01, size=chi.shape)
    mask = np.ones(chi.shape, bool)
    table = roi_table(chi, labels, REGIONS, mask, 8.0, entities={"subject": "01"},
                      chi_reference="none", atlas="test")
    assert list(table.columns) == list(ROI_COLUMNS)
    caudate = table.set_index("roi").loc["caudate"]
    assert caudate.n_voxels == 1000 and caudate.volume_mm3 == 8000.0
    assert caudate.mean_ppm == pytest.approx(0.06, abs=0.001)  # 3 standard errors
    assert caudate.std_ppm == pytest.approx(0.01, rel=0.1)
    assert caudate.p25_ppm < caudate.median_ppm < caudate.p75_ppm
    absent = table.set_index("roi").loc["red_nucleus"]
    assert absent.n_voxels == 0 and np.isnan(absent.mean_ppm)
    assert table.participant_id.tolist() == ["sub-01"] * 3


def test_whole_brain_and_csf_references():
    chi = np.full((10, 10, 10), 0.02)
    chi[:5] = 0.08
    labels = np.zeros(chi.shape, int)
    labels[:2] = 1
    csf = np.zeros(chi.shape, bool)
    csf[8:] = True
    mask = np.ones(chi.shape, bool)
    whole = roi_table(chi, labels, REGIONS[:1], mask, 1.0, entities={"subject": "01"})
    assert whole.mean_ppm[0] == pytest.approx(0.08 - 0.05)
    csf_ref = roi_table(chi, labels, REGIONS[:1], mask, 1.0, entities={"subject": "01"},
                        chi_reference="csf", csf_mask=csf)
    assert csf_ref.mean_ppm[0] == pytest.approx(0.06)
    assert csf_ref.chi_reference_ppm[0] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="ventricle"):
        roi_table(chi, labels, REGIONS[:1], mask, 1.0, entities={"subject": "01"},
                  chi_reference="csf")


def test_erosion_trims_partial_volume():
    labels = np.zeros((20, 20, 20), int)
    labels[5:15, 5:15, 5:15] = 1
    chi = np.where(labels == 1, 0.1, 0.0)
    mask = np.ones(chi.shape, bool)
    table = roi_table(chi, labels, REGIONS[:1], mask, 1.0, entities={"subject": "01"},
                      chi_reference="none", erode_mm=1.0)
    assert table.n_voxels[0] == 8**3 and table.roi_erosion_mm[0] == 1.0


@pytest.mark.parametrize(("erode_mm", "voxel_size_mm", "side"), [
    (0.0, (1.0, 1.0, 1.0), 10),  # no erosion
    (1.0, (1.0, 1.0, 1.0), 8),  # the outer layer
    (2.5, (1.0, 1.0, 1.0), 6),  # depths 1 and 2 mm go, 3 mm stays
    (1.0, (2.0, 2.0, 2.0), 10),  # a 1 mm ball is smaller than a 2 mm voxel
    (2.0, (2.0, 2.0, 2.0), 8),
    (1.0, (0.99999998, 1.00000001, 1.0), 8),  # an oblique affine's rounding
])
def test_erosion_is_a_ball_in_mm(erode_mm, voxel_size_mm, side):
    region = np.zeros((14, 14, 14), bool)
    region[2:12, 2:12, 2:12] = True
    eroded = eroded_region(region, erode_mm, voxel_size_mm)
    assert eroded.sum() == side**3 and eroded[7, 7, 7]
    # the same as scipy's erosion by the ball of that radius
    ball = (np.indices((7, 7, 7)) - 3) * np.round(voxel_size_mm, 3)[:, None, None, None]
    reference = ndimage.binary_erosion(region, (ball**2).sum(0) <= erode_mm**2 + 1e-9)
    np.testing.assert_array_equal(eroded, reference)


def test_anisotropic_erosion_and_empty_region():
    region = np.zeros((14, 14, 14), bool)
    region[2:12, 2:12, 2:12] = True
    # 1 mm in x, 3 mm in z: a 2 mm ball takes two layers in x and none in z
    eroded = eroded_region(region, 2.0, (1.0, 1.0, 3.0))
    assert eroded[4:10, 4:10, 2:12].all() and eroded.sum() == 6 * 6 * 10
    thin = np.zeros((14, 14, 14), bool)
    thin[2:12, 2:12, 7] = True  # one voxel thick: nothing is deeper than 1 mm
    assert not eroded_region(thin, 1.0, (1.0, 1.0, 1.0)).any()


def test_every_reference_region_is_recorded():
    chi = np.full((20, 20, 20), 0.01)
    chi[:4] = -0.03  # white matter
    chi[16:] = 0.02  # ventricles
    labels = np.zeros(chi.shape, int)
    labels[8:12] = 1
    chi[8:12] = 0.07
    wm = np.zeros(chi.shape, bool)
    wm[:4] = True
    csf = np.zeros(chi.shape, bool)
    csf[16:] = True
    mask = np.ones(chi.shape, bool)
    mask[:, :, 0] = False
    table = roi_table(chi, labels, REGIONS[:1], mask, 2.0, entities={"subject": "01"},
                      chi_reference="white_matter", csf_mask=csf, wm_mask=wm,
                      registration_similarity=0.93)
    row = table.iloc[0]
    assert row.mean_ppm == pytest.approx(0.07 + 0.03)
    assert row.chi_reference_ppm == pytest.approx(-0.03)
    assert row.ref_wm_ppm == pytest.approx(-0.03)
    assert row.ref_csf_ppm == pytest.approx(0.02)
    # 4 slabs of 0.07, 4 of -0.03, 4 of 0.02 and 8 of 0.01, out of 20.
    assert row.ref_whole_brain_ppm == pytest.approx((4 * 0.07 - 4 * 0.03 + 4 * 0.02 + 8 * 0.01)
                                                    / 20)
    assert row.mask_volume_mm3 == 20 * 20 * 19 * 2.0
    assert row.registration_similarity == pytest.approx(0.93)

    without = roi_table(chi, labels, REGIONS[:1], mask, 2.0, entities={"subject": "01"})
    assert np.isnan(without.ref_wm_ppm[0]) and np.isnan(without.ref_csf_ppm[0])
    assert np.isnan(without.registration_similarity[0])
    with pytest.raises(ValueError, match="white-matter mask"):
        roi_table(chi, labels, REGIONS[:1], mask, 2.0, entities={"subject": "01"},
                  chi_reference="white_matter")
