"""The group level from the command line: options reach the models; misuse is exit 2."""

from __future__ import annotations

import pandas as pd

from qsmflow.cli.run import main

from .cohort import two_group_cohort, write_cohort


def test_group_model_from_the_command_line(tmp_path, rng):
    participants, chi = two_group_cohort(rng, n_per_group=6)
    bids = tmp_path / "bids"
    bids.mkdir()
    out_dir, tsv = write_cohort(tmp_path, participants, chi)
    tsv.rename(bids / "participants.tsv")
    labels = [pid.removeprefix("sub-") for pid in participants["participant_id"][:10]]

    code = main([str(bids), str(out_dir), "group", "--group-model", "chi ~ group + age",
                 "--laterality", "--participant-label", *labels])

    assert code == 0
    table = pd.read_csv(out_dir / "group" / "group_desc-deepgm_model.csv")
    assert set(table["hemisphere"]) == {"left", "right", "bilateral", "laterality"}
    assert (table["n"] == 10).all()  # --participant-label selects the tables too


def test_group_options_are_refused_at_the_participant_level(tmp_path, capsys):
    bids = tmp_path / "bids"
    bids.mkdir()

    code = main([str(bids), str(tmp_path / "out"), "participant", "--group-model",
                 "chi ~ age"])

    assert code == 2
    assert "--group-model is a group-level option" in capsys.readouterr().err


def test_a_formula_naming_a_missing_column_is_exit_2(tmp_path, rng, capsys):
    participants, chi = two_group_cohort(rng, n_per_group=3)
    bids = tmp_path / "bids"
    bids.mkdir()
    out_dir, tsv = write_cohort(tmp_path, participants, chi)
    tsv.rename(bids / "participants.tsv")

    code = main([str(bids), str(out_dir), "group", "--group-model", "chi ~ diagnosis"])

    assert code == 2
    assert "diagnosis" in capsys.readouterr().err
    assert not (out_dir / "group").exists()
