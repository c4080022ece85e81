"""The leaderboard for a manuscript (issue 28, items 1 and 3), on the two committed real runs (no training).

LaTeX: booktabs floats that fit one column by default (``--wide``: a ``table*``), a verdict table of each run's
headline, the setup (task and model parameters, configuration differences) as a second table, no absolute
path, every user-chosen name escaped; compiled with pdflatex where one is installed (skipped with the reason
elsewhere), measuring each tabular against ``\\columnwidth``. HTML: the verdict and D_dense − D_global are
visible table cells, the configuration differences collapsed in a ``<details>``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.cli import main
from bench.leaderboard_render import PANEL, no_paths
from bench.markdown import LATEX_SPECIAL, latex

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART, DECISIVE = ROOT / "reports" / "quickstart", ROOT / "reports" / "shapes_decisive"
HOSTILE = "a_b % & # $ { } ~ ^ \\ <x>|"
SECRET = "/home/someone/private/voc"


def leaderboard(capsys, *args: str) -> str:
    assert main(["leaderboard", *args]) == 0
    return capsys.readouterr().out


def run_copy(tmp_path: Path, name: str, edit=None) -> Path:
    """quickstart's results.json in a folder of its own (``edit`` changes the data first)."""
    data = json.loads((QUICKSTART / "results.json").read_text())
    if edit:
        data = edit(data)
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def hostile(data: dict) -> dict:
    """The study, an architecture alias (resnet) and an ablation (skip_lesion) renamed to a TeX-hostile name,
    and a task given an absolute data path."""
    text = json.dumps(data)
    text = text.replace('"resnet"', json.dumps(HOSTILE))
    text = text.replace('"skip_lesion"', json.dumps(HOSTILE + " lesion"))
    data = json.loads(text)
    data["study"] = data["config"]["name"] = HOSTILE
    data["config"]["tasks"]["shapes_seg"]["root"] = SECRET
    data["config"]["data_dir"] = SECRET
    return data


LONG_TASK = "my_very_long_segmentation_task_alias_name_ver2xy"  # 48 characters: the longest alias a config allows
LONG_ARCH = "unet_with_an_extraordinarilylongarchitecturename"  # 48, with a 30-character word


def long_names(data: dict) -> dict:
    """The task alias shapes_seg and the architecture alias unet renamed to aliases of the longest length allowed."""
    text = json.dumps(data).replace('"shapes_seg"', json.dumps(LONG_TASK)).replace('"unet"', json.dumps(LONG_ARCH))
    return json.loads(text)


def tabulars(tex: str) -> list[str]:
    return re.findall(r"\\begin\{tabular\}\{([^}]*(?:\{\}[^}]*)*)\}", tex)


# ------------------------------------------------------------------------------------------ LaTeX, static
def test_latex_of_two_runs_is_booktabs_with_a_verdict_table(capsys):
    tex = leaderboard(capsys, str(QUICKSTART), str(DECISIVE), "--format", "latex")
    assert "needs \\usepackage{booktabs}" in tex and "table*" not in tex
    n = tex.count(r"\begin{tabular}")
    assert n == tex.count(r"\toprule") == tex.count(r"\bottomrule") == tex.count(r"\end{tabular}") >= 3
    assert r"\hline" not in tex and "|" not in "".join(tabulars(tex))  # booktabs rules, no vertical rules
    assert str(ROOT) not in tex and "/work" not in tex and not re.search(r"(?<![\w.])/[A-Za-z]", tex)
    # runs by name, never by path; each with the scale its D is on (results.json's scale), not the score's metric
    assert ("A: quickstart ($D$ on balanced accuracy); B: shapes\\_\\allowbreak{}decisive ($D$ on recognition "
            "(balanced accuracy over the object classes))") in tex
    assert "Score: miou, chance" in tex and "--- miou, chance" not in tex
    # the verdict: its own table with each run's headline (pair, D_dense, D_global, Δ with interval, seeds, call)
    verdict = tex[tex.index(r"\label{tab:bench-verdict}") - 3000:]
    verdict = verdict[verdict.rindex(r"\begin{table}"):]
    assert r"\strut}} \\" in verdict  # the run's line ends on a strut: its descenders clear the numbers under it
    head = json.loads((DECISIVE / "results.json").read_text())["verdict"]["headline"]
    for part in (r"\textit{shapes\_\allowbreak{}decisive}", "shapes\\_seg (dense) vs shapes\\_cls (global)",
                 f"${head['dense']['estimate']:.3f}$ & ${head['global_']['estimate']:.3f}$ & "
                 f"${head['difference']['estimate']:.3f}$ & {head['seeds']} & {head['verdict']}",
                 f"$[{head['difference']['low']:.3f}, {head['difference']['high']:.3f}]$", r"\textit{quickstart}"):
        assert part in verdict, part
    # each run's interval at its own level: the sequential study's per-look 98.7%; the quickstart's 5 seeds have
    # none (no distribution-free interval below 6), and no level is claimed for it
    assert r"98.7\% interval" in verdict and r"95\% interval" not in verdict and "medians over seeds" in verdict
    assert "no interval: below 6 seeds no distribution-free interval of the median exists" in verdict
    # one column: at most PANEL[False] ablation columns a tabular, short headings, parameters in the setup table
    for spec in tabulars(tex):
        assert len(spec.replace("@{}", "")) <= 3 + PANEL[False], spec
    assert "Score & $D_{1}$" in tex and "$D_{1}$: D skip\\_removal" in tex and "$D_{2}$: D skip\\_lesion" in tex
    assert r"\label{tab:bench-setup}" in tex and "seeds=\\allowbreak{}0.\\allowbreak{}.\\allowbreak{}39" in tex
    wide = leaderboard(capsys, str(QUICKSTART), str(DECISIVE), "--format", "latex", "--wide")
    assert r"\begin{table*}" in wide and "$D_{1}$ & $D_{2}$ & $D_{3}$ & $D_{4}$ & $S_{5}$" in wide


def test_latex_escapes_every_name_and_writes_no_absolute_path(tmp_path, capsys):
    run = run_copy(tmp_path, "hostile", hostile)
    tex = leaderboard(capsys, str(run), str(DECISIVE), "--format", "latex")
    escaped = latex(HOSTILE)
    assert escaped == (r"a\_b \% \& \# \$ \{ \} \textasciitilde{} \textasciicircum{} \textbackslash{} "
                       r"\textless{}x\textgreater{}\textbar{}")
    plain = tex.replace(r"\allowbreak{}", "")  # where a long name may break
    assert f"{escaped} (A)" in plain and f"{escaped} (hostile)" in plain  # the alias, the study
    assert f"D {escaped} lesion" in plain  # the ablation
    assert HOSTILE not in tex and "a_b %" not in tex
    bare = re.sub(r"\\(?:[%&#$_{}]|[A-Za-z]+\{\})", "", escaped)
    assert not re.search(r"[\\%&#$_{}~^<>|]", bare)  # nothing of the name is left for TeX to read
    assert "private" not in plain and "/home" not in plain  # the task's root and the config's data_dir ...
    assert 'root="...//voc"'.replace("//", "/") in plain and "data\\_dir=.../voc" in plain  # ... by their last part
    assert no_paths('root="/data/x", rel="data/y", win="C:\\\\d\\\\z"') == 'root=".../x", rel="data/y", win=".../z"'
    assert set(LATEX_SPECIAL) >= set("\\&%$#_{}~^")


def test_each_d_cell_is_what_the_caption_says(capsys):
    """A verdict row with an interval shows the verdict's median (starred) over its interval; a verdict row
    without one (the quickstart's 5 seeds) the mean over seeds with its t-interval, unstarred; the caption names
    both, and only those."""
    tex = leaderboard(capsys, str(QUICKSTART), str(DECISIVE), "--format", "latex")
    head = json.loads((DECISIVE / "results.json").read_text())["verdict"]["headline"]
    assert f"& ${head['dense']['estimate']:.3f}^{{*}}$" in tex and f"& ${head['global_']['estimate']:.3f}^{{*}}$" in tex
    quick = json.loads((QUICKSTART / "results.json").read_text())["verdict"]["headline"]
    assert f"{quick['dense']['estimate']:.3f}^{{*}}" not in tex  # no interval: not the verdict's median
    caption = tex[tex.index(r"\caption{Identity dependence"):]
    caption = caption[:caption.index(r"\label")]
    assert r"the mean over seeds with its 95\% t-interval over seeds under it" in caption
    assert "the verdict's median over seeds" in caption and "where the verdict has an interval" in caption
    assert "one seed" not in caption  # no such cell in these two runs
    page = leaderboard(capsys, str(QUICKSTART), str(DECISIVE), "--format", "html")  # the HTML's footer says the same
    assert "on the rows the verdict covers where it has an interval" in page


# --------------------------------------------------------------------------------------- LaTeX, compiled
PREAMBLE = r"""\documentclass[twocolumn,a4paper]{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\begin{document}
\typeout{BENCH COLUMNWIDTH=\the\columnwidth}\typeout{BENCH TEXTWIDTH=\the\textwidth}
"""


def measured(tex: str) -> str:
    """Each tabular set in a box whose width goes to the log (then typeset as it was)."""
    return tex.replace(r"\begin{tabular}", r"\setbox0=\hbox\bgroup\begin{tabular}").replace(
        r"\end{tabular}", r"\end{tabular}\egroup\typeout{BENCH TABULAR=\the\wd0}\box0")


def compile_tex(tex: str, folder: Path) -> tuple[str, dict[str, float], list[float]]:
    pdflatex = shutil.which("pdflatex")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "doc.tex").write_text(PREAMBLE + measured(tex) + "\n\\end{document}\n")
    for _ in range(2):  # twice: the cross-references resolve
        done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder,
                              capture_output=True, text=True, timeout=120)
        log = (folder / "doc.log").read_text(errors="replace")
        assert done.returncode == 0, log[-3000:]
    dims = {k: float(v) for k, v in re.findall(r"BENCH (COLUMNWIDTH|TEXTWIDTH)=([\d.]+)pt", log)}
    return log, dims, [float(w) for w in re.findall(r"BENCH TABULAR=([\d.]+)pt", log)]


def problems(log: str) -> dict[str, list[str]]:
    """Each document part's (``BENCH PART name``) Overfull boxes and floats too large for the page."""
    out: dict[str, list[str]] = {}
    part = "?"
    for line in log.splitlines():
        if line.startswith("BENCH PART "):
            part = line[len("BENCH PART "):]
        elif "Overfull \\hbox" in line or "Float too large" in line:
            out.setdefault(part, []).append(line.strip())
    return out


COMMITTED = sorted(p.parent for p in (ROOT / "reports").glob("*/results.json"))


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="no pdflatex on PATH (Debian: apt-get install texlive-latex-recommended): the LaTeX is "
                           "checked statically only")
@pytest.mark.parametrize("wide", [False, True], ids=["column", "wide"])
def test_latex_of_every_pair_of_committed_runs_fits_the_column_and_the_page(tmp_path, capsys, wide):
    """Every pair of the committed runs, all of them together, a hostile run, and a run whose task and model
    aliases have the longest length allowed beside another, in one two-column a4 article
    (the narrowest column and text of the usual ones), T1 fonts: no Overfull \\hbox, no float too large for the
    page, every tabular within \\columnwidth (``--wide``: \\textwidth), every reference resolved."""
    import itertools

    assert len(COMMITTED) >= 7
    runs = [*itertools.combinations(COMMITTED, 2), tuple(COMMITTED), (run_copy(tmp_path, "hostile", hostile),),
            (run_copy(tmp_path, "long", long_names), QUICKSTART)]  # a long task heading and model name wrap
    parts = []
    for group in runs:
        tex = leaderboard(capsys, *map(str, group), "--format", "latex", *(["--wide"] if wide else []))
        name = "+".join(p.name for p in group)
        # each part its own labels (they repeat between parts), after a page break
        parts.append(rf"\typeout{{BENCH PART {name}}}" + "\n" + tex.replace("tab:bench-", f"tab:{len(parts)}-")
                     + "\n\\clearpage\n")
    log, dims, widths = compile_tex("".join(parts), tmp_path / "doc")
    limit = dims["TEXTWIDTH" if wide else "COLUMNWIDTH"]
    assert len(widths) == "".join(parts).count(r"\begin{tabular}") and all(0 < w <= limit for w in widths), \
        (max(widths), limit)
    assert problems(log) == {}
    assert "undefined" not in log.lower()  # every \ref resolved
    print(f"wide={wide}: {len(runs)} documents, {len(widths)} tabulars, widest {max(widths)} pt of {limit} pt")


# ------------------------------------------------------------------------------------------------- HTML
class Cells(HTMLParser):
    """Each leaderboard table's header texts and rows of cells; a cell's visible text (attributes, i.e.
    tooltips, are not text), and the text that lies inside a <details> element."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self.cell: list[str] | None = None
        self.details = 0
        self.in_details: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "details":
            self.details += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            text = " ".join("".join(self.cell).split())
            self.tables[-1]["rows"][-1].append(text)
            self.cell = None
        elif tag == "details":
            self.details -= 1

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.details:
            self.in_details.append(data)


def test_html_verdict_and_difference_are_cells_and_differences_collapse(tmp_path, capsys):
    page = leaderboard(capsys, str(QUICKSTART), str(DECISIVE), "--format", "html")
    parsed = Cells()
    parsed.feed(page)
    head = json.loads((DECISIVE / "results.json").read_text())["verdict"]["headline"]
    found = 0
    for table in parsed.tables:
        header, *body = table["rows"]
        verdict, diff, differs = header.index("verdict"), header.index("D dense − D global"), header.index("differs")
        assert verdict < diff < min(i for i, h in enumerate(header) if h.startswith(("D ", "S ")) and i != diff)
        for row in body:
            if row[1] == "shapes_decisive" and row[4] == "baseline":  # the decided run's dense and global rows
                found += 1
                assert row[verdict] == f"★ skip_removal: {head['verdict']}"  # visible text, not a tooltip
                d = head["difference"]
                assert row[diff] == f"★ {d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"
            if row[1]:  # a baseline row: its run's configuration differences, counted, the keys collapsed
                assert re.match(r"\d+ keys?", row[differs]), row[differs]
    assert found == 2
    collapsed = "".join(parsed.in_details)
    for key in ("seeds=[0, 1, 2, 3, 4]", "verdict.scale=recognition", "rounds.step=5"):
        assert page.count(key) == collapsed.count(key) > 0  # only inside a <details>
    assert page.count("<details>") == page.count('<td class="differs">') == 6
