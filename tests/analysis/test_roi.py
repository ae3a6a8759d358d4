import numpy as np
import pytest

from qsmflow.analysis.roi import ROI_COLUMNS, RegionLabel, roi_table

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
                      chi_reference="none", erode_vox=1)
    assert table.n_voxels[0] == 8**3 and table.roi_erosion_vox[0] == 1
