"""Figures for a manuscript (issue 28, item 2): every figure as a 300-dpi PNG with its PDF and SVG beside it,
panels laid out one row per task, robust y-limits, rows that make no call named in the legend; and the tidy
table with the recipe of docs/results.md run as written. All from the committed quickstart's results.json,
re-rendered (no training)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench
from bench import plots, sections
from bench.io import owning
from bench.report import verdict_figure, write_report
from bench.results import load_results

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "reports" / "quickstart"


@pytest.fixture(autouse=True)
def every_format(monkeypatch):
    """The suite writes PNG alone (tests/conftest.py); these tests check the PDF and SVG too."""
    monkeypatch.delenv(plots.FORMATS_ENV, raising=False)


@pytest.fixture
def run(tmp_path) -> Path:
    dst = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, dst, ignore=shutil.ignore_patterns("*.png", "*.pdf", "*.svg"))
    return dst


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure bench saves, kept after it is written (its axes, limits and legends can be read)."""
    kept, save = [], plots.save

    def keep(fig, path):
        kept.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "save", keep)
    return kept


def test_every_figure_of_the_report_is_a_300_dpi_png_with_its_pdf_and_svg(run, figures):
    with owning(run):
        report = write_report(run, load_results(run)).read_text()
    linked = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert sorted(linked) == sorted(p.name for p in run.glob("*.png"))
    assert {"verdict.png", "skip_lesion.png", "block_lesion.png"} <= set(linked)
    sizes = {}
    for fig in figures:
        w, h = fig.get_size_inches()
        sizes[fig] = (w, h)
    for name in linked:
        png = run / name
        with Image.open(png) as im:
            assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01), name  # the pHYs chunk
            pixels = im.size
        # the pixels are the figure's inches at 300 dpi: one of the saved figures has exactly this size
        assert any(abs(pixels[0] - w * 300) <= 2 and abs(pixels[1] - h * 300) <= 2 for w, h in sizes.values()), name
        pdf, svg = png.with_suffix(".pdf").read_bytes(), png.with_suffix(".svg").read_text()
        assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf, name  # TrueType embedded: text stays text
        assert "<svg" in svg and "<text" in svg, name
        assert b"CreationDate" not in pdf, name  # no date: an unchanged results.json renders the same bytes


def four_tasks(res):
    """The quickstart's skip_lesion cells copied under four task names (two of them: a badly trained model
    whose D is −4 at one level)."""
    res = res.model_copy(deep=True)
    cells = [c for c in res.cells if "skip_lesion" in c.ablations]
    out = []
    for i, task in enumerate(["t1", "t2", "t3", "t4"]):
        for c in cells:
            c = c.model_copy(deep=True)
            c.task = task
            if i == 3:
                c.ablations["skip_lesion"].records[0]["dependence"] = -4.0
            out.append(c)
    res.cells = out
    return res


def test_four_tasks_are_four_rows_and_a_failed_model_does_not_flatten_the_others(run, figures):
    res = four_tasks(load_results(run))
    with owning(run):
        sections.skip_lesion(res, run, "skip_lesion")
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    rows = sorted({round(ax.get_position().y0, 3) for ax in axes})
    cols = sorted({round(ax.get_position().x0, 3) for ax in axes})
    assert len(axes) == 4 and len(rows) == 4 and len(cols) == 1  # one row per task, not 3 + 1
    assert [ax.get_title().split(" on ")[1] for ax in sorted(axes, key=lambda a: -a.get_position().y0)] == \
        ["t1", "t2", "t3", "t4"]
    low, high = axes[0].get_ylim()
    assert all(ax.get_ylim() == (low, high) for ax in axes)  # D: one scale, shared
    assert -1 < low < 0 and 1 <= high < 1.5  # the −4 does not stretch the axis ...
    t4 = next(ax for ax in axes if ax.get_title().endswith("t4"))
    edge = [line for line in t4.get_lines() if line.get_marker() == "v"]
    assert edge and edge[0].get_ydata()[0] == pytest.approx(low)  # ... it is drawn at the edge
    assert any(t.get_text() == "-4" for t in t4.texts)  # with its value


def test_robust_limits_keep_the_bulk_and_the_anchors():
    assert plots.robust_limits([0.1, 0.2, 0.3, 0.25, -4.0], anchors=[0, 1])[0] > -0.2
    lo, hi = plots.robust_limits([0.1, 0.2, 0.3, 0.25, 0.8])
    assert lo < 0.1 and hi > 0.8  # a large real effect beside small ones: inside
    assert plots.robust_limits([0.1, 0.2, 0.3, 0.25], extents=[-4.0])[0] > -0.2  # an error bar's end: clipped
    assert plots.robust_limits([]) is None


def legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_an_ill_conditioned_row_and_a_baseline_at_chance_are_named_in_the_verdict_legend(run, figures):
    res = load_results(run).model_copy(deep=True)
    row = next(r for r in res.verdict.rows if r.family == "identity")
    with owning(run):
        verdict_figure(res, run)
    assert not any("ill-conditioned" in t or "at or below chance" in t for t in legend_texts(figures[-1]))
    row.verdict = "ill-conditioned"
    row.conditioning.ok = False
    row.conditioning.global_margin.estimate = -0.02
    with owning(run):
        verdict_figure(res, run)
    texts = legend_texts(figures[-1])
    assert any(t.startswith("ill-conditioned") for t in texts)
    assert any(t.startswith("at or below chance") for t in texts)
    ax = figures[-1].axes[0]
    assert any(line.get_marker() == "X" for line in ax.get_lines())  # the side at chance: an X


def test_a_model_below_the_margin_is_marked_in_its_d_figure(run, figures):
    res = load_results(run).model_copy(deep=True)
    for c in res.cells:
        if c.task == "shapes_seg" and "skip_lesion" in c.ablations:
            c.metrics["balanced_accuracy"] = c.chance["balanced_chance"] + 0.05  # margin 0.05 < 0.1
    with owning(run):
        sections.skip_lesion(res, run, "skip_lesion")
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes]
    assert "unet on shapes_seg [ill-conditioned]" in titles and "unet on shapes_cls" in titles
    assert any(t.startswith("ill-conditioned") for t in legend_texts(fig))


def test_the_tidy_table_has_a_row_per_seed_cell_and_setting(run):
    res = load_results(run)
    df = bench.tidy(run)
    records = sum(len(out.records) for c in res.cells for out in c.ablations.values())
    assert len(df) == records + len(res.comparisons)
    one = df[(df.ablation == "block_lesion") & (df.cell == res.cells[0].id) & (df.key_block == "trunk.3")]
    rec = next(r for r in res.cells[0].ablations["block_lesion"].records if r["key"]["block"] == "trunk.3")
    assert one.dependence.item() == rec["dependence"] and one.primary.item() == rec["primary"]
    assert one.margin.item() == pytest.approx(res.cells[0].metrics["balanced_accuracy"]
                                              - res.cells[0].chance["balanced_chance"])
    train = df[df.phase == "train"]
    assert len(train) == len(res.comparisons) and set(train.key_variant) == {"no_identity"}
    assert np.allclose(sorted(train.dependence), sorted(c.dependence.estimate for c in res.comparisons))


def test_the_recipe_in_docs_results_md_runs_as_written(run, tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "results.md").read_text()
    section = doc[doc.index("## Your own figure from results.json"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 14 and '"reports/quickstart"' in code
    work = tmp_path / "work"
    (work / "reports").mkdir(parents=True)
    shutil.copytree(run, work / "reports" / "quickstart")
    monkeypatch.chdir(work)
    exec(compile(code, "docs/results.md", "exec"), {})
    out = work / "skip_lesion_mine.pdf"
    assert out.is_file() and out.read_bytes().startswith(b"%PDF")


# ---------------------------------------------------------------- legends and alt text say what is drawn
def test_the_verdict_figure_says_why_a_row_is_underpowered_and_draws_the_difference(run, figures, monkeypatch):
    monkeypatch.setenv(plots.FORMATS_ENV, "png")  # the legends are read, not the vector files
    res = load_results(run).model_copy(deep=True)
    with owning(run):
        alt = verdict_figure(res, run)
    texts = legend_texts(figures[-1])
    # 5 seeds with min_seeds 5: the reason is the missing distribution-free interval, not min_seeds
    assert "underpowered (5 seeds: below 6 no distribution-free interval: no call)" in texts
    assert not any("min_seeds" in t for t in texts)
    assert "Δ = dense − global (the call's)" in texts  # the difference the call rests on is drawn
    assert "interval" in alt and "95% intervals" not in alt and "no interval drawn" in alt  # none is drawn
    res.verdict.min_seeds = 10
    head = res.verdict.headline
    row = next(r for r in res.verdict.rows if (r.architecture, r.ablation) == (head.architecture, head.ablation))
    row.difference.low, row.difference.high = row.difference.estimate - 0.1, row.difference.estimate + 0.2
    with owning(run):
        alt = verdict_figure(res, run)
    assert "underpowered (5 seeds, fewer than min_seeds = 10: no call)" in legend_texts(figures[-1])
    assert "with their 95% intervals where a row has one" in alt
    ax = figures[-1].axes[0]
    bars = [c for c in ax.containers if c.lines[0].get_color() == "black" and c.has_yerr]
    assert len(bars) == 1  # the Δ with its interval


def test_skip_lesion_error_bars_and_axis_are_explained(run, figures, monkeypatch):
    monkeypatch.setenv(plots.FORMATS_ENV, "png")  # the legends are read, not the vector files
    with owning(run):
        sections.skip_lesion(load_results(run), run, "skip_lesion")
    texts = legend_texts(figures[-1])
    assert "error bar: sd over the 5 seeds" in texts and "mean fill: mean over seeds" in texts
    assert figures[-1].axes[0].get_xlabel() == "skip level lesioned (0 = finest)"
    res = load_results(run).model_copy(deep=True)  # levels named by the architecture (a ResNet's blocks)
    for c in res.cells:
        for rec in c.ablations.get("skip_lesion", type("", (), {"records": []})).records:
            if rec["key"]["level"] != "all":
                rec["key"]["level"] = f"block{rec['key']['level']}"
    with owning(run):
        sections.skip_lesion(res, run, "skip_lesion")
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][:1] == ["block0"]
    assert "0 = finest" not in ax.get_xlabel() and ax.get_xlabel() == "skip lesioned (as the model names it)"


def test_identity_readout_is_one_row_per_task_with_readouts_at_chance_marked(run, figures, monkeypatch):
    monkeypatch.setenv(plots.FORMATS_ENV, "png")  # the legends are read, not the vector files
    res = load_results(run)
    with owning(run):
        sections.identity_readout(res, run, "identity_readout")
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.axison]
    tasks = list(dict.fromkeys(c.task for c in res.cells if "identity_readout" in c.ablations))
    assert [ax.get_title().rsplit(" on ", 1)[1] for ax in axes] == tasks and len(tasks) == 2
    assert len({round(ax.get_position().x0, 3) for ax in axes}) == 1  # one column: a row per task
    seg = axes[tasks.index("shapes_seg")]  # every seed's readout of the segmentation task is at chance
    assert [t.get_text() for t in seg.get_xticklabels()] == [f"s{s}" for s in range(5)]
    assert sum(line.get_marker() == "X" for line in seg.get_lines()) == 5
    assert "X: readout at or below chance" in legend_texts(fig)
    assert "error bar: 95% bootstrap interval (test set)" in legend_texts(fig)
