"""Every vendor's phase, from a tiny BIDS dataset through discovery, validation and the
preparation node: the known field of ``phase_fields`` comes back within the rounding
bound of each convention, and the ambiguous participant alone is refused."""

import json

import nibabel as nib
import numpy as np
import pytest

from qsmflow.bids.discovery import find_gre_runs
from qsmflow.bids.errors import QSMInputError
from qsmflow.bids.validation import validate_run_images
from qsmflow.interfaces.gre import PrepareGRE

from .phase_fields import DTE_S, ENCODINGS, FIELD_HZ, TE_S, field_from_phase, true_phase_rad

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SIEMENS_DCM2NIIX = {"Manufacturer": "Siemens", "ConversionSoftware": "dcm2niix"}
# participant -> (encoding, on-disk dtype, extra sidecar fields)
PARTICIPANTS = {
    "siemens": ("siemens -4096..4095", np.int16, SIEMENS_DCM2NIIX),
    "usiemens": ("siemens 0..4095", np.uint16, {}),
    "mrad": ("mrad -3142..3142", np.int16, {"Manufacturer": "GE"}),
    "deg": ("deg -180..180", np.int16, {"Units": "arbitrary"}),
    "rad": ("float radians", np.float32, {"Units": "rad"}),
}


def _save(path, data, dtype, sidecar):
    nib.Nifti1Image(np.asarray(data).astype(dtype), AFFINE).to_filename(path)
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


def _write_run(root, sub, parts: dict, dtype, extra):
    anat = root / f"sub-{sub}" / "anat"
    anat.mkdir(parents=True)
    for k, te in enumerate(TE_S):
        for part, data in parts.items():
            sidecar = {"EchoTime": te, "MagneticFieldStrength": 3.0, **extra}
            _save(anat / f"sub-{sub}_echo-{k + 1}_part-{part}_MEGRE.nii.gz", data[..., k],
                  np.float32 if part == "mag" else dtype, sidecar)


@pytest.fixture(scope="module")
def vendor_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("vendors") / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "vendor phase", "BIDSVersion": "1.10.0"}))
    phase = true_phase_rad()
    magnitude = np.ones(phase.shape)
    for sub, (encoding, dtype, extra) in PARTICIPANTS.items():
        _write_run(root, sub, {"mag": magnitude, "phase": ENCODINGS[encoding][0](phase)},
                   dtype, extra)
    signal = 1000 * np.exp(1j * phase)
    _write_run(root, "complex", {"real": np.round(signal.real), "imag": np.round(signal.imag)},
               np.int16, {"Manufacturer": "GE"})
    # Siemens units spanning a fifth of -4096..4095 and no sidecar to say so: refused.
    _write_run(root, "ambiguous", {"mag": magnitude,
                                   "phase": np.round(phase / np.pi * 800)}, np.int16, {})
    # The phase turning the other way: read with --phase-sign -1.
    _write_run(root, "flipped", {"mag": magnitude,
                                 "phase": ENCODINGS["siemens -4096..4095"][0](-phase)},
               np.int16, {})
    return root


def _prepared_field_hz(run, tmp_path, monkeypatch) -> np.ndarray:
    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path)
    node = PrepareGRE(phase_units=run.phase_units, phase_units_from=run.phase_units_from,
                      phase_sign=run.phase_sign)
    for name in ("magnitude_files", "phase_files", "real_files", "imag_files"):
        if getattr(run, name):
            setattr(node.inputs, name, list(getattr(run, name)))
    result = node.run()
    return field_from_phase(nib.load(result.outputs.phase_rad).get_fdata())


def test_each_vendor_convention_recovers_the_known_field(vendor_dataset, tmp_path,
                                                         monkeypatch):
    discovery = find_gre_runs(vendor_dataset)
    runs = {run.subject: run for run in discovery.runs}
    assert sorted(runs) == sorted([*PARTICIPANTS, "complex", "ambiguous", "flipped"])
    assert runs["siemens"].phase_units == "siemens"  # from Manufacturer + dcm2niix
    assert runs["rad"].phase_units == "rad"  # from BIDS "Units"
    for sub, (encoding, _, _) in PARTICIPANTS.items():
        validate_run_images(runs[sub])
        field_hz = _prepared_field_hz(runs[sub], tmp_path / sub, monkeypatch)
        bound_hz = ENCODINGS[encoding][1] / (2 * np.pi * DTE_S) + 1e-4  # float32 on disk
        assert np.abs(field_hz - FIELD_HZ).max() <= bound_hz, sub
    # Real and imaginary parts of amplitude 1000, rounded: within 0.1 Hz (phase_units).
    validate_run_images(runs["complex"])
    field_hz = _prepared_field_hz(runs["complex"], tmp_path / "complex", monkeypatch)
    assert np.abs(field_hz - FIELD_HZ).max() < 0.1
    with pytest.raises(QSMInputError) as err:
        validate_run_images(runs["ambiguous"])
    message = str(err.value)
    assert "sub-ambiguous_echo-1_part-phase_MEGRE.nii.gz" in message
    echo_1 = np.round(true_phase_rad()[..., 0] / np.pi * 800)
    assert f"from {echo_1.min():g} to {echo_1.max():g} (integers)" in message
    assert "19% of Siemens units -4096..4095" in message and "--phase-units" in message


def test_phase_sign_option_turns_the_phase_back(vendor_dataset, tmp_path, monkeypatch):
    (run,) = find_gre_runs(vendor_dataset, participant_labels=["flipped"],
                           phase_sign=-1).runs
    validate_run_images(run)
    field_hz = _prepared_field_hz(run, tmp_path, monkeypatch)
    assert np.abs(field_hz - FIELD_HZ).max() <= np.pi / 4096 / (2 * np.pi * DTE_S) + 1e-4
