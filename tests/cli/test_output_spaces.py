"""--output-spaces: the valid template space is accepted, anything else refused clearly."""

from pathlib import Path

import pytest

from qsmflow.bids.errors import QSMUsageError
from qsmflow.cli.config import build_config
from qsmflow.cli.parser import build_parser

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"


def _config(tmp_path, *options, level="participant"):
    args = build_parser().parse_args([str(EXAMPLES), str(tmp_path / "out"), level,
                              "-w", str(tmp_path / "work"), *options])
    return build_config(args)


def test_the_default_atlas_space_is_accepted_once(tmp_path):
    config = _config(tmp_path, "--output-spaces", "MNI152NLin2009aSym:res-1",
                     "MNI152NLin2009aSym:res-1")
    assert config.output_spaces == ("MNI152NLin2009aSym:res-1",)
    assert _config(tmp_path).output_spaces == ()  # default: native space only


@pytest.mark.parametrize("options,message", [
    (("--output-spaces", "MNI152NLin2009aSym:res-2"),
     "--output-spaces MNI152NLin2009aSym:res-2 is not a space qsmflow can write; valid: "
     "MNI152NLin2009aSym:res-1"),
    (("--output-spaces", "MNI152NLin6Asym"), "valid: MNI152NLin2009aSym:res-1"),
    (("--output-spaces", "MNI152NLin2009aSym:res-1", "--roi-labels-dir", str(EXAMPLES)),
     "labels you supply come with no registration to a template: drop --roi-labels-dir"),
])
def test_unknown_spaces_and_conflicts_are_refused(tmp_path, options, message):
    with pytest.raises(QSMUsageError) as err:
        _config(tmp_path, *options)
    assert message in str(err.value)


def test_it_is_a_participant_level_option(tmp_path):
    with pytest.raises(QSMUsageError, match="participant-level option"):
        _config(tmp_path, "--output-spaces", "MNI152NLin2009aSym:res-1", level="group")
