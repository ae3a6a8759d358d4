"""Where the default atlas is built: once per user, or per work directory when the user's
cache cannot be written."""

import os

import pytest

from qsmflow.atlases import atlas_cache_dir


def test_qsmflow_cache_dir_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("QSMFLOW_CACHE_DIR", str(tmp_path / "cache"))
    assert atlas_cache_dir(tmp_path / "work") == tmp_path / "cache" / "atlas"
    assert (tmp_path / "cache" / "atlas").is_dir()


def test_xdg_cache_home_is_used_without_qsmflow_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("QSMFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert atlas_cache_dir(tmp_path / "work") == tmp_path / "xdg" / "qsmflow" / "atlas"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_cache_falls_back_to_the_work_directory(tmp_path, monkeypatch):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    monkeypatch.setenv("QSMFLOW_CACHE_DIR", str(readonly))
    try:
        assert atlas_cache_dir(tmp_path / "work") == tmp_path / "work" / "atlas_cache"
    finally:
        readonly.chmod(0o700)


def test_a_cache_path_that_is_a_file_falls_back_to_the_work_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("QSMFLOW_CACHE_DIR", str(blocker))
    assert atlas_cache_dir(tmp_path / "work") == tmp_path / "work" / "atlas_cache"


def test_a_read_only_cache_that_holds_the_atlas_is_used(tmp_path, monkeypatch):
    """A container image ships the atlas prebuilt in a folder its user cannot write."""
    from qsmflow.atlases import DEFAULT_ATLAS_VERSION

    built = tmp_path / "image_cache" / "atlas" / f"default_atlas_v{DEFAULT_ATLAS_VERSION}"
    built.mkdir(parents=True)
    for name in ("template_T1w_brain.nii.gz", "deepgm_dseg.nii.gz", "deepgm_dseg.tsv",
                 "ventricles_mask.nii.gz", "white_matter_mask.nii.gz"):
        (built / name).write_text("")
    monkeypatch.setenv("QSMFLOW_CACHE_DIR", str(tmp_path / "image_cache"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a non-root user
    assert atlas_cache_dir(tmp_path / "work") == tmp_path / "image_cache" / "atlas"
