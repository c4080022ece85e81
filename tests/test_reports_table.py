"""The committed reports/README.md table equals the one re-derived from reports/*/results.json."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.reports_index import committed_table, render_table, update

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_committed_table_is_current():
    assert committed_table(REPORTS / "README.md") == render_table(REPORTS).strip(), \
        "reports/README.md is stale: run `python -m bench reports`"


def test_generator_on_a_run(tmp_path):
    from bench.cli import main
    from tests.test_cli import TINY  # a real tiny run

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    assert main(["run", str(cfg), "--out", str(tmp_path / "reports" / "tiny"), "--quiet"]) == 0
    shutil.rmtree(tmp_path / "reports" / "tiny" / "checkpoints")
    readme = tmp_path / "reports" / "README.md"
    readme.write_text("intro\n<!-- results-table:start -->\nold\n<!-- results-table:end -->\noutro\n")
    assert update(readme) and not update(readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "[tiny](tiny/report.md)" in text and "| seg | res | baseline | miou |" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert render_table(empty) == "No committed studies yet."
