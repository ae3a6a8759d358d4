"""The participant HTML report, on a tiny fake derivatives folder; then in headless Chromium."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tomli_w

from qsmflow.analysis.roi import RegionLabel, roi_table
from qsmflow.reports.figures import mosaic_figure, slice_positions
from qsmflow.reports.html import RunInfo, entities_from_label, write_participant_report
from qsmflow.reports.methods import REFERENCES, cited_references, qsm_methods

SHAPE = (29, 33, 23)  # odd sizes
VOXEL_MM = 2.0
# Left-anterior-superior voxel axes, as many scanners write them: the report must flip
# them to RAS for display.
AFFINE = np.array([[-VOXEL_MM, 0, 0, 28], [0, VOXEL_MM, 0, -32], [0, 0, VOXEL_MM, -22],
                   [0, 0, 0, 1]], float)
ECHO_TIMES_S = [0.004, 0.011, 0.018]
B0_T = 3.0
SHA = "ab" * 32
OK_RUN, FAILED_RUN = "sub-01_run-1", "sub-01_run-2"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _save(data, path: Path, dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), AFFINE), str(path))


def _make_dataset(root: Path, rng) -> tuple[Path, dict]:
    """A BIDS magnitude and the derivatives of one run of sub-01, and a run record."""
    bids, out = root / "bids", root / "out"
    anat = out / "sub-01" / "anat"
    ijk = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1) / 2
    radius = np.sqrt(sum((ijk[a] - centre[a]) ** 2 for a in range(3)))
    brain = radius < 10
    qsm = radius < 9
    magnitude = 100.0 * brain + rng.normal(0, 2, SHAPE) ** 2
    _save(magnitude, bids / "sub-01" / "anat" / "sub-01_run-1_echo-1_part-mag_MEGRE.nii.gz")
    (bids / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.9.0"}')

    chi = 0.05 * np.sin(ijk[0] / 3) * np.cos(ijk[1] / 4) * qsm
    labels = np.zeros(SHAPE, np.int16)
    labels[(np.abs(ijk[0] - centre[0] - 3) < 2) & (np.abs(ijk[1] - centre[1]) < 3)
           & (np.abs(ijk[2] - centre[2]) < 2)] = 1
    labels[(np.abs(ijk[0] - centre[0] + 3) < 2) & (np.abs(ijk[1] - centre[1]) < 3)
           & (np.abs(ijk[2] - centre[2]) < 2)] = 2
    stem = anat / OK_RUN
    _save(chi, Path(f"{stem}_Chimap.nii.gz"))
    _save(brain, Path(f"{stem}_desc-brain_mask.nii.gz"), np.uint8)
    _save(qsm, Path(f"{stem}_desc-qsm_mask.nii.gz"), np.uint8)
    fmap = anat.parent / "fmap" / OK_RUN  # field maps are in fmap/ (BIDS Derivatives)
    fmap.parent.mkdir(parents=True, exist_ok=True)
    _save(40.0 * (ijk[2] - centre[2]) / 10 * brain, Path(f"{fmap}_desc-total_fieldmap.nii.gz"))
    _save(3.0 * np.cos(ijk[0] / 2) * qsm, Path(f"{fmap}_desc-local_fieldmap.nii.gz"))
    _save(labels, Path(f"{stem}_space-orig_desc-deepgm_dseg.nii.gz"), np.int16)
    Path(f"{stem}_space-orig_desc-deepgm_dseg.tsv").write_text(
        "index\tname\troi\themisphere\n1\tcaudate_left\tcaudate\tleft\n"
        "2\tcaudate_right\tcaudate\tright\n")
    regions = [RegionLabel(1, "caudate", "left"), RegionLabel(2, "caudate", "right")]
    roi_table(chi, labels, regions, qsm, VOXEL_MM**3, entities=entities_from_label(OK_RUN),
              atlas="AAL3+SUITdentate").to_csv(f"{stem}_desc-deepgm_chistats.csv", index=False)
    record_name = "logs/qsmflow_20260101-000000-1_config.toml"
    Path(f"{stem}_Chimap.json").write_text(json.dumps({
        "Units": "ppm", "EchoTime": ECHO_TIMES_S, "MagneticFieldStrength": B0_T,
        "Sources": [f"bids:raw:sub-01/anat/sub-01_run-1_echo-{e}_part-{p}_MEGRE.nii.gz"
                    for p in ("mag", "phase") for e in (1, 2, 3)],
        "QsmflowProvenance": record_name, "DipoleInversionMethod": "nsidl",
        "B0DirectionVoxel": [0.0, 0.258819, 0.965926], "EffectiveEchoTime": 0.011,
        "NSIDLWeightsSha256": SHA}))
    figures = out / "sub-01" / "figures"
    figures.mkdir(parents=True)
    shutil.copy(mosaic_figure(magnitude, str(root / "reg.png"), (2, 2, 2), vmin=0, vmax=100),
                figures / f"{OK_RUN}_desc-atlasreg_qc.png")
    record = {
        "qsmflow": {"version": "0.1.0", "git_hash": "0123abc", "git_dirty": False,
                    "command_line": "qsmflow bids out participant --inversion nsidl",
                    "started": "2026-01-01T00:00:00+00:00",
                    "finished": "2026-01-01T00:10:00+00:00", "nsidl_weights_sha256": SHA},
        "dependencies": {"numpy": "2.0", "nipype": "1.11"},
        "config": {"bids_dir": str(bids), "output_dir": str(out), "inversion": "nsidl",
                   "mask_erode_mm": 1.0, "vsharp_radii_mm": [], "vsharp_threshold": 0.05,
                   "bgremove": "vsharp", "bgremove_refine": True,
                   "chi_reference": "whole_brain"},
    }
    (out / record_name).parent.mkdir(parents=True)
    (out / record_name).write_text(tomli_w.dumps(record))
    return out, record


def _render(out: Path, record: dict) -> Path:
    return write_participant_report(
        out, "sub-01",
        runs_info=[RunInfo(OK_RUN), RunInfo(FAILED_RUN, "failed",
                                            "stage invert failed: RuntimeError: boom")],
        timings={OK_RUN: {"brain mask": 1.5, "background removal": 5.1,
                          "dipole inversion": 40.2},
                 FAILED_RUN: {"brain mask": 1.4, "dipole inversion": 0.3}},
        stage_details={OK_RUN: {"brain mask": "1200 ml", "background removal":
                                "V-SHARP radii 36-4 mm, dipole-model refinement"},
                       FAILED_RUN: {"dipole inversion": "FAILED"}},
        warnings={OK_RUN: ["3 NaN/Inf voxels were set to zero <script>alert(1)</script>"]},
        config_record=record)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    out, record = _make_dataset(root, np.random.default_rng(12345))
    page = _render(out, record)
    return {"page": page, "out": out, "record": record, "html": page.read_text()}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "a" and not attrs.get("href", "#").startswith("#"):
            self.links.append(attrs["href"])


def _parse(text: str) -> _Collect:
    parser = _Collect()
    parser.feed(text)
    return parser


def test_report_is_written_beside_the_participant_folder(report):
    assert report["page"] == report["out"] / "sub-01.html"


def test_report_has_every_section(report):
    ids = _parse(report["html"]).ids
    for section in ("summary", "failed-runs", "methods", "provenance",
                    f"run-{OK_RUN}", f"run-{OK_RUN}-images", f"run-{OK_RUN}-rois",
                    f"run-{OK_RUN}-parameters", f"run-{OK_RUN}-timings",
                    f"run-{OK_RUN}-warnings", f"run-{FAILED_RUN}", f"run-{FAILED_RUN}-failure"):
        assert section in ids, section


def test_every_image_is_a_png_beside_the_page(report):
    parsed = _parse(report["html"])
    # magnitude, total field, local field, chi, ROIs over chi, atlas registration
    assert len(parsed.images) == 6
    for src in parsed.images + parsed.links:
        assert not src.startswith(("/", "file:", "http")), src  # relative: works offline
        target = report["page"].parent / src
        assert target.is_file(), src
        if src.endswith(".png"):
            assert target.read_bytes()[:8] == PNG_SIGNATURE, src
    assert any(src.endswith(f"{OK_RUN}_desc-chi_mosaic.png") for src in parsed.images)


def test_run_parameters_timings_and_warnings(report):
    text = report["html"]
    assert "4.00, 11.00, 18.00 ms (3 echoes)" in text
    assert "3 T" in text and "15.0 deg" in text  # B0 tilted 15 degrees from the slice axis
    assert SHA in text
    # V-SHARP radii: QSM.jl's rule on the 2 mm voxels, as RemoveBackground applies it
    assert "36-4 mm (9 radii; default" in text
    assert "40.2" in text and "1200 ml" in text
    assert "caudate" in text and ("+0.0" in text or "-0.0" in text)  # ROI table in ppm
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text


def test_failed_run_says_why(report):
    text = report["html"]
    assert "failed: why" in text and "RuntimeError: boom" in text


def test_methods_reuse_the_workflow_description_and_cite_everything(report):
    from qsmflow.workflows.qsm import init_qsm_wf

    description = init_qsm_wf(echo_times_s=ECHO_TIMES_S, b0_t=B0_T, inversion="nsidl",
                              bgremove="vsharp").__desc__
    text = report["html"]
    methods = text[text.index('id="methods"'):text.index('id="provenance"')]
    assert description.strip().split(" [")[0] in methods
    assert qsm_methods(ECHO_TIMES_S, B0_T, "nsidl", bgremove="vsharp").strip().replace(
        "&", "&amp;") in methods
    for key in ("Liu 2013", "Ghiglia &amp; Romero 1994", "Schofield &amp; Zhu 2003",
                "Schweser 2011", "Wu 2012", "Liu 2018", "Wen 2014", "NSIDL 2024-25",
                "Avants 2008", "Fonov 2011", "Rolls 2020"):
        assert f"[{key}]" in methods, key
    assert "MODEL_CARD.md" in methods and SHA in methods


def test_every_citation_has_a_reference():
    texts = [qsm_methods(ECHO_TIMES_S, B0_T, m) for m in ("nsidl", "tkd", "cfl2", "ndi")]
    keys = [key for key, _ in cited_references(*texts)]
    assert {"Shmueli 2009", "Bilgic 2014", "Polak 2020", "NSIDL 2024-25"} <= set(keys)
    assert set(keys) <= set(REFERENCES)


def test_missing_magnitude_gives_a_note_not_a_broken_image(report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(report["out"], out)
    record = json.loads(json.dumps(report["record"]))
    record["config"]["bids_dir"] = str(tmp_path / "moved")
    page = _render(out, record)
    text = page.read_text()
    assert "First-echo magnitude with the brain mask outline: not available" in text
    for src in _parse(text).images:
        assert (page.parent / src).is_file()
    roi = pd.read_csv(out / "sub-01" / "anat" / f"{OK_RUN}_desc-deepgm_chistats.csv")
    assert list(roi.label_id) == [1, 2]


def test_slice_positions_lie_inside_the_region():
    region = np.zeros((10, 12, 9), bool)
    region[2:8, 3:9, 1:8] = True
    positions = slice_positions(region, 2, 4)
    assert positions == sorted(positions) and len(positions) == 4
    assert all(1 < p < 7 for p in positions)


CHECK_IMAGES = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0 &&
                                      i.getBoundingClientRect().width > 0));
  document.body.setAttribute('data-images', String(images.length));
  document.body.setAttribute('data-broken', broken.map(i => i.getAttribute('src')).join(' '));
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="headless Chromium is not installed (Debian: apt-get install "
                           "chromium); the report's images are still checked on disk above")
def test_report_renders_in_headless_chromium_without_broken_images(report, tmp_path):
    # A copy of the page with a checking script, beside the original so links resolve.
    probe = report["page"].with_name("sub-01.probe.html")
    probe.write_text(report["html"].replace("</body>", CHECK_IMAGES + "</body>"))
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
              "--window-size=1280,4000", "--virtual-time-budget=10000"]
    try:
        dom = subprocess.run(common + ["--dump-dom", probe.as_uri()], capture_output=True,
                             text=True, timeout=120, check=True).stdout
    finally:
        probe.unlink()
    assert 'data-images="6"' in dom, dom[:500]
    assert 'data-broken=""' in dom
    rendered = _parse(dom).ids
    assert {"summary", "methods", "provenance", f"run-{OK_RUN}-images",
            f"run-{FAILED_RUN}-failure"} <= rendered


def test_methods_name_the_background_removal_that_ran():
    lbv_text = qsm_methods(ECHO_TIMES_S, B0_T, "tkd")  # the default: LBV, refined
    assert "[Zhou 2014]" in lbv_text and "[Liu 2018; Wen 2014]" in lbv_text
    assert "V-SHARP" not in lbv_text
    plain = qsm_methods(ECHO_TIMES_S, B0_T, "tkd", bgremove="vsharp", bgremove_refine=False)
    assert "V-SHARP [Schweser 2011; Wu 2012] and" in plain and "Liu 2018" not in plain


def _images_section(text: str) -> str:
    return text[text.index(f'id="run-{OK_RUN}-images"'):text.index(f'id="run-{OK_RUN}-rois"')]


def test_local_field_caption_names_the_background_removal_that_ran(report, tmp_path):
    # The fixture's run: V-SHARP with the refinement.
    images = _images_section(report["html"])
    assert ("Local field (Hz) after V-SHARP background removal with dipole-model refinement"
            in images)
    out = tmp_path / "out"
    shutil.copytree(report["out"], out)
    record = json.loads(json.dumps(report["record"]))
    record["config"].update(bgremove="lbv", bgremove_refine=False)
    images = _images_section(_render(out, record).read_text())
    assert "Local field (Hz) after LBV background removal</figcaption>" in images
    assert "V-SHARP" not in images and "refinement" not in images


def test_run_labels_with_variant_entities_are_read():
    """rec-/flip-/inv-/mt- runs (kept apart by discovery) get a report section too."""
    entities = entities_from_label("sub-01_ses-pre_rec-norm_flip-2_run-1")
    assert entities["subject"] == "01" and entities["session"] == "pre"
    assert entities["reconstruction"] == "norm" and entities["flip"] == "2"
    assert entities["acquisition"] is None
    with pytest.raises(ValueError, match="unknown BIDS entities"):
        entities_from_label("sub-01_foo-1")


def test_methods_name_the_registration_grid_the_interface_uses():
    from qsmflow.interfaces import atlas as registration
    from qsmflow.reports.methods import REGISTRATION_GRID_TEXT, roi_methods

    text = roi_methods(atlas="AAL3 + SUIT", registered=True, chi_reference="csf")
    assert REGISTRATION_GRID_TEXT in text
    assert f"on a {registration.REGISTRATION_VOXEL_MM:g} mm grid" in REGISTRATION_GRID_TEXT
    assert f"finer than {0.75 * registration.REGISTRATION_VOXEL_MM:g} mm" in \
        REGISTRATION_GRID_TEXT
    assert f"plus {registration.REGISTRATION_CROP_MARGIN_MM:g} mm" in REGISTRATION_GRID_TEXT
