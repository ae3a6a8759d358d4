"""v2 augmentations do what they claim; the bank refuses test and tuning heads."""

import numpy as np
import pytest
from scipy import ndimage

from qsmflow.simulation.wholehead import TEST_SUBJECTS, TRAINING_SUBJECTS, TUNING_SUBJECTS
from qsmflow.training import augment
from qsmflow.training.bank import SplitError, build_bank, check_training_subject


def _ball(shape, centre, radius_vox):
    g = np.indices(shape) - np.asarray(centre)[:, None, None, None]
    return (g ** 2).sum(0) <= radius_vox ** 2


@pytest.mark.parametrize("subject", TEST_SUBJECTS + TUNING_SUBJECTS + ("07", "99"))
def test_bank_refuses_every_subject_outside_the_training_split(subject, tmp_path):
    with pytest.raises(SplitError):
        check_training_subject(subject)
    with pytest.raises(SplitError):  # before any file is read or written
        build_bank(tmp_path / "bank", heads_dir=tmp_path, subjects=["41", subject],
                   draws_per_subject=1, n_mni=0, seed=0, cache_dir=tmp_path)
    assert not any((tmp_path / "bank").glob("vol_*"))


def test_bank_accepts_the_training_split():
    assert [check_training_subject(s) for s in TRAINING_SUBJECTS] == list(TRAINING_SUBJECTS)
    assert check_training_subject("41") == "41"


def test_bank_loader_refuses_a_manifest_naming_a_test_head(tmp_path):
    import json

    from qsmflow.training.bank import load_bank

    (tmp_path / "manifest.json").write_text(json.dumps({"subjects": ["18"], "volumes": []}))
    with pytest.raises(SplitError):
        load_bank(tmp_path)


@pytest.mark.parametrize("change_mm", [-3.0, -1.5, 1.0, 3.0])
def test_mask_change_is_in_mm_with_anisotropic_voxels(change_mm):
    vsz = np.array([0.5, 0.5, 1.0])
    shape = (80, 80, 40)
    radius_mm = 12.0
    g = (np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2) * \
        vsz[:, None, None, None]
    r = np.sqrt((g ** 2).sum(0))
    out = augment.change_mask(r <= radius_mm, vsz, change_mm)
    # A ball of radius R changed by d mm is the ball of radius R + d, to half a voxel.
    assert out[r <= radius_mm + change_mm - 0.5].all()
    assert not out[r > radius_mm + change_mm + 0.5].any()


def test_residual_background_is_harmonic_inside_the_mask(rng):
    # Fine anisotropic voxels, so that the finite-difference Laplacian's own error (next
    # to the spheres outside the mask) stays well below the scale it is compared with.
    vsz = np.array([0.3, 0.25, 0.35])
    shape = (96, 112, 84)
    g = (np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2) * \
        vsz[:, None, None, None]
    mask = np.sqrt((g ** 2).sum(0)) <= 11.0
    inner = ndimage.distance_transform_edt(mask, sampling=vsz) > 1.0

    def laplacian(f):
        return sum(np.gradient(np.gradient(f.astype(float), vsz[a], axis=a), vsz[a], axis=a)
                   for a in range(3))

    for _ in range(3):
        field = augment.residual_background_ppm(rng, mask, vsz, (0.1, 0.2, 0.97))
        rms = field[mask].std()
        assert 0 < rms <= augment.RESIDUAL_RMS_PPM[1] * 1.001
        # Scale: a field of this rms varying over 5 mm has a Laplacian ~ rms / 5^2.
        assert np.abs(laplacian(field)[inner]).max() < 0.1 * rms / 5.0 ** 2
    # The check can fail: the (non-harmonic) edge error does not pass it.
    err = augment.edge_error_ppm(rng, mask, vsz)
    assert np.abs(laplacian(err)[inner]).max() > 0.3 * err[mask].std() / 5.0 ** 2


def test_edge_error_is_largest_at_the_edge_and_zero_outside(rng):
    vsz = (1.0, 1.0, 1.0)
    mask = _ball((40, 40, 40), (20, 20, 20), 15)
    err = augment.edge_error_ppm(rng, mask, vsz)
    depth = ndimage.distance_transform_edt(mask)
    assert np.all(err[~mask] == 0)
    rim, core = np.abs(err[mask & (depth <= 2)]).mean(), np.abs(err[depth > 10]).mean()
    assert rim > 5 * core


def test_weight_is_in_range_and_noise_follows_it(rng):
    mask = _ball((30, 30, 30), (15, 15, 15), 12)
    m0 = np.where(np.indices(mask.shape)[0] < 10, 0.2, 1.0).astype(np.float32)  # dark minority
    r2s = np.full(mask.shape, 20.0, np.float32)
    weight, noise, scale, _ = augment.weight_and_noise(rng, mask, m0, r2s, (1.0, 1.0, 1.0))
    assert np.all(weight[~mask] == 0) and np.all(noise[~mask] == 0)
    assert weight[mask].min() >= augment.MIN_WEIGHT and weight[mask].max() <= 1.0
    assert 2.0 < scale < 80.0  # 2 pi gamma B0 TE 1e-6 for 1.5-7 T and 8-25 ms
    bright = mask & (m0 == 1.0)
    dark = mask & (m0 == 0.2)
    # Noise follows 1/W voxel by voxel: noise * W has one sd everywhere in the mask.
    normalised = noise * np.maximum(weight, augment.MIN_WEIGHT)
    assert normalised[dark].std() == pytest.approx(normalised[bright].std(), rel=0.1)
    assert noise[dark].std() > 1.5 * noise[bright].std()


def test_the_noise_sd_map_is_the_sd_of_the_noise_and_clean_draws_are_noise_free(rng):
    mask = _ball((30, 30, 30), (15, 15, 15), 12)
    m0 = np.where(np.indices(mask.shape)[0] < 10, 0.2, 1.0).astype(np.float32)
    r2s = np.full(mask.shape, 20.0, np.float32)
    for _ in range(3):
        _, noise, _, sd = augment.weight_and_noise(rng, mask, m0, r2s, (1.0, 1.0, 1.0))
        assert np.all(sd[~mask] == 0) and sd[mask].min() > 0
        assert (noise[mask] / sd[mask]).std() == pytest.approx(1.0, rel=0.03)
    clean = [augment.weight_and_noise(rng, mask, m0, r2s, (1.0, 1.0, 1.0), noise_free=True)
             for _ in range(2)]
    assert all(np.all(n == 0) and np.all(s == 0) for _, n, _, s in clean)


def test_signal_dropout_darkens_the_edge_not_the_core(rng):
    mask = _ball((48, 48, 48), (24, 24, 24), 20)
    depth = ndimage.distance_transform_edt(mask)
    rims, cores = [], []
    for _ in range(5):
        factor = augment.signal_dropout(rng, mask, (1.0, 1.0, 1.0))
        assert factor.min() >= 1 - augment.DROPOUT_DEPTH[1] - 1e-9 and factor.max() <= 1.0
        rims.append(1 - factor[mask & (depth <= 2)].mean())
        cores.append(1 - factor[depth > 15].mean())
    assert np.mean(rims) > 3 * np.mean(cores)


def _toy_anatomy():
    from qsmflow.simulation import wholehead_anatomy as wa

    shape = (40, 40, 40)
    tissue = np.full(shape, wa.CSF, np.uint8)
    tissue[6:34, 6:34, 6:34] = wa.GM
    tissue[12:28, 12:28, 12:28] = wa.WM
    brain = tissue != wa.CSF
    brain[2:38, 2:38, 2:38] = True
    return wa.WholeHeadAnatomy("41", np.eye(4), tissue, np.zeros(shape, np.int16), brain, {})


def test_tissue_profile_2_puts_gray_matter_above_white_matter_under_a_weak_texture():
    """Profile 2 draws WM, then GM above it by 0.015-0.10 ppm, under a texture of at most
    0.008 ppm sd; profile 1 (NSIDL v2's bank) draws them independently under up to 0.025."""
    from qsmflow.simulation import wholehead_anatomy as wa
    from qsmflow.training.bank import M0, PROFILES, brainweb_fine_maps

    anatomy = _toy_anatomy()
    contrast, texture = {"1": [], "2": []}, {"1": [], "2": []}
    for name in contrast:
        for seed in range(12):
            chi, _, m0, _ = brainweb_fine_maps(anatomy, np.random.default_rng(seed),
                                               PROFILES[name])
            # the deformation moves the labels; M0 says which tissue a voxel got
            gm, wm = chi[np.isclose(m0, M0[wa.GM])], chi[np.isclose(m0, M0[wa.WM])]
            contrast[name].append(np.median(gm) - np.median(wm))
            texture[name].append(wm.std())
    assert min(contrast["2"]) > 0.015 - 0.005 and max(contrast["2"]) < 0.10 + 0.005
    assert max(texture["2"]) < 0.008 + 0.002
    assert max(texture["1"]) > 0.015  # the texture that motivated profile 2


def test_a_bank_folder_refuses_another_tissue_profile(tmp_path):
    import json

    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "manifest.json").write_text(json.dumps({"tissue_profile": "1"}))
    with pytest.raises(ValueError, match="profile 1"):
        build_bank(bank, heads_dir=tmp_path, subjects=["41"], draws_per_subject=1, n_mni=0,
                   seed=0, cache_dir=tmp_path, profile="2")


def test_a_clean_patch_is_the_sampled_field_in_the_true_mask_with_noise_sd_zero():
    from qsmflow.training.bank import BankVolume
    from qsmflow.training.synthetic_v2 import draw_patch, prepare

    shape = (40, 40, 40)
    brain = _ball(shape, (20, 20, 20), 15)
    smooth = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(shape), 3)
    volume = BankVolume((0.05 * smooth * brain).astype(np.float32),
                        (0.01 * smooth).astype(np.float32), brain,
                        np.full(shape, 0.8, np.float32), np.full(shape, 20.0, np.float32),
                        np.array([0.0, 0.0, 1.0]), 1.0, "toy")
    prepared = prepare([volume])[0]
    clean = draw_patch(prepared, np.random.default_rng(3), 24, clean_fraction=1.0)
    assert np.all(clean["noise_sd_ppm"] == 0)
    # the same draw without the augmentations: the field differs only by them
    again = draw_patch(prepared, np.random.default_rng(3), 24, clean_fraction=1.0)
    assert np.array_equal(clean["field_ppm"], again["field_ppm"])
    corrupted = draw_patch(prepared, np.random.default_rng(3), 24, clean_fraction=0.0)
    assert corrupted["noise_sd_ppm"].max() > 0
