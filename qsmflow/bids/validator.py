"""The official BIDS validator (``bids-validator-deno``), run on a dataset and read back.

qsmflow validates BIDS_DIR before it computes anything, as fMRIPrep does, and refuses a
dataset with validator errors in one paragraph (``--skip-bids-validation`` processes it
as it is). CI runs the same validator on the example dataset and on the derivatives
(``scripts/validate_bids.py``).

The validator is the ``bids-validator-deno`` package, a runtime dependency of qsmflow
(the deno runtime it brings is about 100 MB, against 750 MB for torch); it runs offline
with the BIDS schema it ships.

References
----------
BIDS validator, https://github.com/bids-standard/bids-validator (``--format json``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from .errors import QSMInputError, QSMUsageError

PACKAGE = "bids-validator-deno"
# The validator reads every file's header; a large dataset takes minutes, not hours.
TIMEOUT_S = 1800
LOCATIONS_SHOWN = 2  # locations named per kind of error in the paragraph


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" or "warning"
    code: str  # e.g. SIDECAR_KEY_REQUIRED
    sub_code: str  # e.g. the missing key ("Units"); "" if none
    location: str  # path from the dataset root, "/sub-01/anat/..."; "" if none
    message: str  # the validator's explanation of this issue
    summary: str = ""  # the first sentence of the validator's explanation of the code


@dataclass(frozen=True)
class ValidationResult:
    issues: tuple[Issue, ...]
    validator: str  # "bids-validator-deno 3.0.2"
    schema_version: str

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "warning")


def validator_version() -> str | None:
    """The installed ``bids-validator-deno``'s version; None if it is not installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def _command() -> list[str] | None:
    """How to start the validator with this Python (its console script need not be on
    PATH: ``.venv/bin/qsmflow`` runs without an activated venv), else from PATH."""
    if util.find_spec("bids_validator_deno") is not None:
        return [sys.executable, "-c", "import sys; sys.argv[0] = 'bids-validator'; "
                "from bids_validator_deno import cli; cli()"]
    found = shutil.which("bids-validator-deno")
    return [found] if found else None


def _first_sentence(text: str) -> str:
    sentence = " ".join(text.split()).split(". ")[0].rstrip(".")
    return sentence[:1].lower() + sentence[1:] if sentence else ""


def parse_validator_json(text: str, validator: str = PACKAGE) -> ValidationResult:
    """Read the output of ``bids-validator-deno --format json``."""
    report = json.loads(text)
    messages = report["issues"].get("codeMessages", {})
    issues = tuple(
        Issue(severity=item.get("severity", "error"), code=item["code"],
              sub_code=item.get("subCode") or "", location=item.get("location") or "",
              message=(item.get("issueMessage") or messages.get(item["code"], "")).strip(),
              summary=_first_sentence(messages.get(item["code"], "")))
        for item in report["issues"]["issues"])
    return ValidationResult(issues, validator, str(report.get("summary", {})
                                                   .get("schemaVersion", "")))


def run_validator(dataset_dir: Path, *, dataset_types: tuple[str, ...] = (),
                  timeout_s: float = TIMEOUT_S) -> ValidationResult:
    """Validate ``dataset_dir`` (``dataset_types``: e.g. ``("derivative",)``; default: the
    type its dataset_description.json declares).

    Raises
    ------
    QSMUsageError
        If the validator is not installed, does not finish in ``timeout_s``, or fails
        without a report.
    """
    dataset_dir = Path(dataset_dir).resolve()
    command = _command()
    if command is None:
        raise QSMUsageError(
            f"the BIDS validator is not installed ({PACKAGE} is a dependency of qsmflow: "
            f"pip install '{PACKAGE}'), so BIDS_DIR cannot be validated. Install it, or pass "
            "--skip-bids-validation to process the dataset without validation.")
    args = [str(dataset_dir), "--format", "json", "--no-color"]
    if dataset_types:
        args += ["--datasetTypes", *dataset_types]
    # The validator calls git to date files of a repository: never let it look outside.
    env = dict(os.environ, NO_COLOR="1", GIT_CEILING_DIRECTORIES=str(Path(dataset_dir).parent))
    try:
        done = subprocess.run(command + args, capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd=str(dataset_dir))
    except subprocess.TimeoutExpired as err:
        raise QSMUsageError(
            f"the BIDS validator did not finish validating {dataset_dir} in {timeout_s:.0f} "
            "s. Validate the dataset yourself (bids-validator-deno BIDS_DIR) and pass "
            "--skip-bids-validation.") from err
    version = validator_version()
    try:
        return parse_validator_json(done.stdout, f"{PACKAGE} {version}" if version
                                    else PACKAGE)
    except (ValueError, KeyError, TypeError) as err:
        tail = " ".join((done.stderr or done.stdout).split())[-400:]
        raise QSMUsageError(
            f"the BIDS validator failed on {dataset_dir} without a report (exit status "
            f"{done.returncode}): {tail}. Pass --skip-bids-validation to process the dataset "
            "without validation.") from err


def _participant(location: str) -> str | None:
    """``"01"`` for an issue in ``/sub-01/...``; None for the dataset's own files."""
    first = location.strip("/").split("/")[0]
    return first.removeprefix("sub-") if first.startswith("sub-") else None


def describe_errors(result: ValidationResult, dataset_dir: Path,
                    participant: str | None = None) -> str:
    """The errors of ``result`` as one paragraph: each kind of error once, with the key it
    concerns, the first files and how many more (``participant``: the errors are that
    participant's, who is left out)."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for issue in result.errors:
        groups[(issue.code, issue.sub_code, issue.summary)].append(issue.location.lstrip("/"))
    kinds = []
    for (code, sub_code, summary), locations in groups.items():
        where = [loc for loc in dict.fromkeys(locations) if loc]
        text = code + (f" ({sub_code})" if sub_code else "") + (f", {summary}," if summary
                                                                else "")
        if where:
            text += " in " + ", ".join(where[:LOCATIONS_SHOWN])
            if len(where) > LOCATIONS_SHOWN:
                text += f" and {len(where) - LOCATIONS_SHOWN} more file(s)"
        kinds.append(text)
    n = len(result.errors)
    what = (f"the files of sub-{participant} in {dataset_dir} are not valid BIDS"
            if participant else f"BIDS_DIR {dataset_dir} is not a valid BIDS dataset")
    return (f"{what}: the BIDS validator ({result.validator}) found {n} "
            f"error{'s' if n != 1 else ''}: " + "; ".join(kinds) + ". Run "
            f"`bids-validator-deno {dataset_dir}` to read what each error means, and fix the "
            "dataset; or, if you are sure that these errors do not concern the GRE images, "
            "pass --skip-bids-validation to process it as it is. "
            + (f"sub-{participant} was left out." if participant else "Nothing was computed."))


@dataclass(frozen=True)
class InputValidation:
    """The validator's verdict on BIDS_DIR, for the selected participants."""

    result: ValidationResult  # the issues that concern the selection
    refused: dict  # participant label -> why it is left out (one paragraph)


def validate_input_dataset(bids_dir: Path, participant_labels=()) -> InputValidation:
    """Validate BIDS_DIR before anything is computed.

    An error in the dataset's own files (dataset_description.json, participants.tsv ...)
    refuses the dataset; an error in a participant's files leaves that participant out,
    as any other problem of one participant does; errors of participants that are not
    selected (``participant_labels``) are ignored.

    Raises
    ------
    QSMInputError
        If the dataset's own files have validator errors. (Whether refused participants
        leave any to process is the caller's to say: ``refused``.)
    """
    result = run_validator(bids_dir)
    selected = tuple(i for i in result.issues if _participant(i.location) is None
                     or not participant_labels or _participant(i.location) in participant_labels)
    result = ValidationResult(selected, result.validator, result.schema_version)
    by_participant: dict[str, list[Issue]] = defaultdict(list)
    for issue in result.errors:
        by_participant[_participant(issue.location) or ""].append(issue)
    if "" in by_participant:
        raise QSMInputError(describe_errors(
            ValidationResult(tuple(by_participant[""]), result.validator,
                             result.schema_version), bids_dir))
    refused = {label: describe_errors(ValidationResult(tuple(issues), result.validator,
                                                       result.schema_version),
                                      bids_dir, participant=label)
               for label, issues in sorted(by_participant.items())}
    return InputValidation(result, refused)
