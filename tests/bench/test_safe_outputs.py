"""Outputs never execute what a user named: an HTML link is a relative path, a name in markdown is text
(no HTML, no table break), a CSV cell is never a spreadsheet formula. Valid files: reports/quickstart."""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.cli import main
from bench.leaderboard_render import safe_href
from bench.markdown import csv_cell, esc, table
from bench.report import render
from bench.reports_index import render_table
from bench.results import load_results
from tests.helpers import QUICKSTART_RESULTS, write_run

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = QUICKSTART_RESULTS
HOSTILE = "evil <script>alert(1)</script> | & co\nnext line"


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads(TEMPLATE.read_text())


def renamed(template: dict, study: str) -> dict:
    data = copy.deepcopy(template)
    data["study"] = data["config"]["name"] = study
    return data


def is_relative(href: str) -> bool:
    return not urlsplit(href).scheme and not href.startswith("/") and ":" not in href.split("/", 1)[0]


def test_html_link_from_a_javascript_folder_is_a_relative_path(template, tmp_path, capsys):
    name = "javascript:alert(document.domain)"
    run = write_run(tmp_path / name, renamed(template, name))
    out = tmp_path / "lb.html"
    assert main(["leaderboard", str(run), "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]
    assert hrefs and all(is_relative(h) for h in hrefs), hrefs
    assert "javascript%3Aalert%28document.domain%29/results.json" in hrefs  # still the run's file


@pytest.mark.parametrize("path, expected", [
    ("quickstart/report.md", "quickstart/report.md"),
    ("../runs/a b/report.md", "../runs/a%20b/report.md"),
    ("javascript:alert(1)/report.md", "javascript%3Aalert%281%29/report.md"),
    ("//evil.example/x", "./evil.example/x"),
    ("/etc/passwd", "./etc/passwd"),
    ('a"onmouseover="x/report.md', "a%22onmouseover%3D%22x/report.md"),
])
def test_safe_href(path, expected):
    assert safe_href(path) == expected and is_relative(safe_href(path))


def test_html_escapes_names_in_text_and_attributes(template, tmp_path, capsys):
    run = write_run(tmp_path / "run", renamed(template, HOSTILE))
    assert main(["leaderboard", str(run), "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_study_name_is_text_in_report_md(template, tmp_path):
    run = write_run(tmp_path / "run", renamed(template, HOSTILE))
    text = render(load_results(run), run)
    title = text.splitlines()[0]
    assert title == r"# Identity-flow study: evil &lt;script&gt;alert(1)&lt;/script&gt; \| &amp; co next line"
    assert "<script>" not in text


def md_tables(text: str) -> list[list[str]]:
    """Each markdown table's lines; a row that a name broke has more unescaped '|' than its header."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def cells_of(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def assert_tables_intact(text: str) -> None:
    for lines in md_tables(text):
        assert all(cells_of(line) == cells_of(lines[0]) for line in lines), lines


def test_study_name_is_text_in_leaderboard_compare_and_reports(template, tmp_path, capsys):
    run = write_run(tmp_path / "reports" / "a|b<i>", renamed(template, HOSTILE))
    assert main(["leaderboard", str(run)]) == 0
    md = capsys.readouterr().out
    assert "<script>" not in md and "<i>" not in md and r"evil &lt;script&gt;alert(1)&lt;/script&gt; \| &amp;" in md
    assert r"(a\|b&lt;i&gt;)" in md  # the run folder's name, escaped too
    assert_tables_intact(md)

    other = write_run(tmp_path / "other", renamed(template, "plain"))
    assert main(["compare", str(other), str(run)]) == 0
    out = capsys.readouterr().out
    assert "<script>" not in out and out.splitlines()[0].startswith("# compare: A = plain, B = evil &lt;script&gt;")
    assert_tables_intact(out)

    index = render_table(tmp_path / "reports")
    assert r"[a\|b&lt;i&gt;](a%7Cb%3Ci%3E/report.md)" in index and "<i>" not in index
    assert_tables_intact(index)


def test_markdown_helpers():
    assert esc("quickstart_v1.2-a") == "quickstart_v1.2-a"  # a normal name is unchanged
    assert esc("a|b<c>&d\ne[f](g)") == r"a\|b&lt;c&gt;&amp;d e\[f\](g)"
    assert table(["h"], [["x|y\nz"]]) == "| h |\n|---|\n| x\\|y z |"
    assert table(["h"], [[esc("x|y")]]) == "| h |\n|---|\n| x\\|y |"  # escaped once, not twice


@pytest.mark.parametrize("value, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-1+2", "'-1+2"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("quickstart", "quickstart"),
    (-0.12, -0.12), (3, 3), (None, None), ("", ""),
])
def test_csv_cell(value, expected):
    assert csv_cell(value) == expected


def test_csv_formula_cells_are_text_numbers_stay_numbers(template, tmp_path, capsys):
    data = renamed(template, "=HYPERLINK(\"http://evil\",\"x\")")
    for cell in data["cells"]:
        cell["task"] = "@" + cell["task"]
        if "block_lesion" in cell["ablations"]:
            cell["ablations"]["block_lesion"]["summary"]["dependence"] = -0.12
            cell["ablations"]["block_lesion"]["summary_ci"] = None
    run = write_run(tmp_path / "run", data)
    assert main(["leaderboard", str(run), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["study"].startswith("'=HYPERLINK") and r["task"].startswith("'@") for r in rows)
    assert any(r["block_lesion_mean"] == "-0.12" for r in rows)  # a negative number is written as a number

    worse = copy.deepcopy(data)
    for cell in worse["cells"]:
        cell["metrics"][cell["primary_metric"]] -= 0.1
    other = write_run(tmp_path / "other", worse)
    assert main(["compare", str(run), str(other), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    deltas = [r for r in rows if r["kind"] == "delta"]
    assert deltas and all(r["task"].startswith("'@") for r in deltas)
    assert all(float(r["delta"]) == pytest.approx(-0.1) for r in deltas if r["quantity"] in ("miou", "accuracy"))
    assert not any(r["delta"].startswith("'") for r in deltas)
