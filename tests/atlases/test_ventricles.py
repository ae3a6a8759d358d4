"""The CSF reference region: the lateral ventricles derived from the template's tissue maps."""

import numpy as np
from scipy import ndimage

from qsmflow.atlases import lateral_ventricles
from qsmflow.atlases.anatomy import load_template_anatomy

# Lateral ventricles of healthy young adults, both sides together, in ml. Means reported:
# 4.5-5.5 ml per side in 212 adults at 3 T (Surg Radiol Anat 2025;47(1), "Morphometric and
# volumetric analysis of lateral ventricles by magnetic resonance imaging: a study on age
# and gender"), and 16.2 ml for ALL ventricles (lateral, third, fourth) of 118 people in
# their 20s (Kim et al., Neurosci Lett 2006;395:155-158), an upper bound for the lateral
# ones. The range allows for the spread between people around those means.
LATERAL_VENTRICLES_ML = (7.0, 20.0)


def test_template_ventricles_are_two_symmetric_csf_components():
    anatomy = load_template_anatomy()
    ventricles = lateral_ventricles(anatomy.gm, anatomy.wm, anatomy.brain, anatomy.affine)
    voxel_ml = abs(np.linalg.det(anatomy.affine[:3, :3])) / 1000.0
    total_ml = ventricles.sum() * voxel_ml
    assert LATERAL_VENTRICLES_ML[0] <= total_ml <= LATERAL_VENTRICLES_ML[1], total_ml

    components, n = ndimage.label(ventricles)
    assert n == 2
    sizes = ndimage.sum(ventricles, components, [1, 2]) * voxel_ml
    assert abs(sizes[0] - sizes[1]) / sizes.mean() < 0.1, sizes
    centroids = [anatomy.affine[:3, :3] @ np.asarray(c) + anatomy.affine[:3, 3]
                 for c in ndimage.center_of_mass(ventricles, components, [1, 2])]
    (left, right) = sorted(centroids, key=lambda c: c[0])
    assert left[0] < -5 and right[0] > 5  # one per hemisphere (RAS x, mm)
    # mirror images across the template's midplane x = 0, within 2 mm
    np.testing.assert_allclose(left * [-1, 1, 1], right, atol=2.0)

    csf_probability = 1.0 - anatomy.gm - anatomy.wm
    assert csf_probability[ventricles].mean() > 0.8


def test_only_enclosed_csf_is_ventricle():
    """A ball of tissue with a CSF rim at its surface, two enclosed CSF pockets of 2 ml and
    one of 0.1 ml: the two large pockets, exactly, are the ventricles."""
    shape, affine = (60, 60, 60), np.diag([1.0, 1.0, 1.0, 1.0])
    r = np.linalg.norm(np.indices(shape) - 29.5, axis=0)
    brain = r < 27
    wm = np.where(brain, 1.0, 0.0)
    rim = brain & (r > 24)
    pockets = np.zeros(shape, bool)
    pockets[15:20, 20:40, 20:40] = True  # 5 x 20 x 20 = 2 ml
    pockets[40:45, 20:40, 20:40] = True
    small = np.zeros(shape, bool)
    small[28:33, 28:33, 28:32] = True  # 0.1 ml
    wm[rim | pockets | small] = 0.0
    found = lateral_ventricles(np.zeros(shape), wm, brain, affine)
    assert np.array_equal(found, pockets)
