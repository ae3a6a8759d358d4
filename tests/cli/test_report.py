"""The CLI writes one report per participant that had runs, whatever became of them."""

import logging
from types import SimpleNamespace

from qsmflow.cli.report import write_reports

RECORD = {"qsmflow": {"version": "0.1.0"}, "config": {"inversion": "tkd"}}


def test_one_report_per_participant_with_failed_and_submitted_runs(tmp_path):
    reporter = SimpleNamespace(timings={"sub-02_ses-pre": {"brain mask": 1.0}},
                               details={"sub-02_ses-pre": {"brain mask": "FAILED"}})
    pages = write_reports(
        tmp_path, succeeded=[], failures={"sub-02_ses-pre": "stage mask failed: empty mask",
                                          "sub-03": "found magnitude images but no phase"},
        submitted=["sub-04_run-1"], warnings={"sub-03": ["single echo"]},
        reporter=reporter, record=RECORD, record_path=tmp_path / "logs" / "x.toml")
    assert sorted(p.name for p in pages) == ["sub-02.html", "sub-03.html", "sub-04.html"]
    text = (tmp_path / "sub-02.html").read_text()
    assert "failed: why" in text and "empty mask" in text and "FAILED" in text
    assert "no phase" in (tmp_path / "sub-03.html").read_text()
    assert "submitted" in (tmp_path / "sub-04.html").read_text()


def test_a_report_error_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / "sub-01.html").mkdir()  # the page cannot be written over a folder
    with caplog.at_level(logging.ERROR, logger="qsmflow"):
        pages = write_reports(tmp_path, succeeded=[], failures={"sub-01": "boom"},
                              submitted=[], warnings={}, reporter=None, record=RECORD,
                              record_path=tmp_path / "x.toml")
    assert pages == []
    assert "sub-01: the HTML report could not be written" in caplog.text
