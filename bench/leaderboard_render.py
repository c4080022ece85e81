"""Leaderboard renderings for a paper: one self-contained HTML page and a LaTeX (booktabs) table.

The HTML has no network dependency (inline CSS and a few lines of JS that sort a table when its header
is clicked; a baseline's variants move with it), so it can be mailed or archived as one file. Both read
the rows of ``bench.leaderboard_table`` and nothing else of bench; ``bench.leaderboard`` picks one.
"""

from __future__ import annotations

import html
import os
import re
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote, urlsplit

from bench.leaderboard_table import MERGE, RANKING, d_of, differs_text, labels
from bench.markdown import confidence, fmt, latex

VERDICT_WORD = {"supported": "supported", "contradicted": "contradicted", "inconclusive": "inconclusive"}


def groups(rows: list[dict]) -> list[list[dict]]:
    """Rows split by task (what was run), in the leaderboard's order."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[r["task_spec"]].append(r)
    return list(out.values())


def units(rows: list[dict]) -> list[list[dict]]:
    """A baseline followed by its variants (same run, task, architecture), in order."""
    out: list[list[dict]] = []
    for r in rows:
        if out and r["variant"] != "baseline" and (out[-1][0]["run"], out[-1][0]["task"], out[-1][0]["architecture"]) \
                == (r["run"], r["task"], r["architecture"]):
            out[-1].append(r)
        else:
            out.append([r])
    return out


def chance_of(rows: list[dict]) -> float | None:
    vals = [r["chance"][0] for r in rows if r["chance"][0] is not None]
    return sum(vals) / len(vals) if vals else None


def params_text(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


# ---------------------------------------------------------------------------------------------- HTML
CSS = """
:root{--fg:#1d2430;--muted:#6b7280;--line:#d9dee7;--head:#f3f5f9;--sup:#17663a;--con:#a11d2b;--inc:#6b7280}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:24px 32px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 2px}
.spec{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted);font-weight:normal;margin-left:8px}
.meta{color:var(--muted);margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
thead th{background:var(--head);border-bottom:2px solid #b8c0cc;cursor:pointer;user-select:none;position:sticky;top:0}
thead th[data-dir=asc]::after{content:" \\25B2";font-size:10px}thead th[data-dir=desc]::after{content:" \\25BC";font-size:10px}
th.num,td.num{text-align:right}
tbody.unit{border-top:1px solid #b8c0cc}
tr.variant td{background:#fafbfc}tr.variant td.variant-name{padding-left:22px;color:var(--muted)}
.sd,.ci,.n{color:var(--muted);font-size:12px}
.arch-spec{display:block;font:11px ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted);white-space:normal}
td.arch{white-space:normal;max-width:230px}
.badge{display:inline-block;white-space:nowrap;border-radius:9px;padding:0 7px;font-size:12px;margin:1px 2px 1px 0;border:1px solid}
.supported{color:var(--sup);border-color:var(--sup)}.contradicted{color:var(--con);border-color:var(--con)}
.inconclusive{color:var(--inc);border-color:var(--inc)}.headline{font-weight:600}
tr.near td{color:#8a6d1f}.flag{background:#fff3c4;border-color:#c9a227;color:#7a5c00}
.differs{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;white-space:normal;max-width:220px}
.differs summary{cursor:pointer;color:var(--muted)}.diff{white-space:nowrap}\ntd.verdicts{white-space:normal;min-width:120px;max-width:220px}
footer{margin-top:28px;color:var(--muted);font-size:12px;max-width:1100px}
a{color:#1f5fbf}
"""

JS = """
document.querySelectorAll('table.lb').forEach(function (t) {
  t.querySelectorAll('thead th').forEach(function (th, i) {
    th.addEventListener('click', function () {
      var dir = th.dataset.dir === 'desc' ? 'asc' : 'desc', num = th.classList.contains('num');
      t.querySelectorAll('thead th').forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      function val(u) {
        var c = u.rows[0].cells[i], v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
        return num ? (v === '' ? NaN : parseFloat(v)) : v.toLowerCase();
      }
      Array.from(t.tBodies).sort(function (a, b) {
        var x = val(a), y = val(b);
        if (num) { if (isNaN(x)) return 1; if (isNaN(y)) return -1; return dir === 'asc' ? x - y : y - x; }
        return dir === 'asc' ? x.localeCompare(y) : y.localeCompare(x);
      }).forEach(function (u) { t.appendChild(u); });
    });
  });
});
document.documentElement.dataset.sortable = document.querySelectorAll('table.lb').length;  // handlers attached
"""


def e(x: object) -> str:
    """Text or an attribute value: ``& < > " '`` as entities, so a name cannot open a tag or end a quote."""
    return html.escape(str(x), quote=True)


def safe_href(path: str) -> str:
    """A link target that can only be a relative path: percent-encoded (so ``javascript:x`` becomes the file
    name ``javascript%3Ax``), and ``./`` in front of anything that would still read as a scheme or as a
    network or absolute path. Escape it with ``e`` for the attribute."""
    href = quote(path, safe="/")
    if href.startswith("/") or urlsplit(href).scheme or ":" in href.split("/", 1)[0]:
        href = "./" + href.lstrip("/")
    return href


def num_td(value: float | None, inner: str, title: str = "") -> str:
    v = "" if value is None else f"{value:.6g}"
    t = f' title="{e(title)}"' if title else ""
    return f'<td class="num" data-v="{v}"{t}>{inner}</td>'


def metric_td(r: dict) -> str:
    mean, sd, n = r["value"]
    if mean is None:
        return num_td(None, "—" if not r["failed"] else "failed")
    inner = f"{mean:.3f}" + (f'<span class="sd"> ± {sd:.3f}</span>' if n > 1 else "") + f'<span class="n"> n={n}</span>'
    if r["near_chance"]:
        inner = '<span class="badge flag" title="less than 10% of the headroom above chance: D is not meaningful">' \
                "≈ chance</span> " + inner
    return num_td(mean, inner, f"mean ± sd over {n} seed(s)")


def d_td(r: dict, ablation: str) -> str:
    mean, sd, n = d_of(r, ablation)
    if mean is None:
        return num_td(None, '<span class="n">—</span>')
    ci = r["intervals"].get(ablation)
    inner = f"{mean:.3f}"
    title = f"mean over {n} seed(s)"
    if ci:
        (low, high), source, estimate = ci
        if estimate is not None:  # the interval's own estimate: the number and its interval always agree
            mean = estimate
        inner = f'{mean:.3f}<span class="ci"> [{low:.3f}, {high:.3f}]</span>'
        title = {"verdict": "the verdict's median and interval (its level: 95%, or a sequential look's), over seeds and "
                            "test examples",
                 "seeds": f"mean and 95% t-interval over {n} seeds (between-seed spread only)",
                 }.get(source, "95% interval, bootstrap over test examples (one seed)")
    elif n > 1:
        inner += f'<span class="sd"> ± {sd:.3f}</span><span class="n"> n={n}</span>'
        title = f"mean ± sd over {n} seeds (no interval computed for this row)"
    return num_td(mean, inner, title)


def verdict_td(r: dict) -> str:
    """One badge per verdict row this (dense or global) baseline belongs to; hover: the difference."""
    badges = []
    for v in r["verdicts"]:
        diff = v["difference"]
        title = f"{v['ablation']}: D dense − D global = {fmt(v['estimate'])}" + (
            f" [{diff[0]:.3f}, {diff[1]:.3f}]" if diff else "") + (" (headline)" if v["headline"] else "")
        cls = f"badge {VERDICT_WORD.get(v['verdict'], 'inconclusive')}" + (" headline" if v["headline"] else "")
        star = "★ " if v["headline"] else ""
        badges.append(f'<span class="{cls}" title="{e(title)}">{star}{e(v["ablation"])}: {e(v["verdict"])}</span>')
    return f'<td class="verdicts">{"".join(badges)}</td>'


def difference_td(r: dict) -> str:
    """D_dense − D_global with its 95% interval, visible, one line per verdict row the baseline belongs to (the
    headline first, ★); sorts by the headline's estimate."""
    vs = sorted(r["verdicts"], key=lambda v: not v["headline"])
    lines = []
    for v in vs:
        diff = v["difference"]
        star = "★ " if v["headline"] else ""
        ci = f'<span class="ci"> [{diff[0]:.3f}, {diff[1]:.3f}]</span>' if diff else ""
        lines.append(f'<span class="diff" title="{e(v["ablation"])}: D dense − D global">{star}{fmt(v["estimate"])}{ci}</span>')
    return num_td(vs[0]["estimate"] if vs else None, "<br>".join(lines))


def differs_td(r: dict) -> str:
    """The configuration keys in which this run differs from the others, collapsed: a ``<details>`` whose
    summary counts them (open it to read them), so a long difference never widens the table."""
    n = len(r["differs"])
    return (f'<td class="differs"><details><summary>{n} key{"s" if n != 1 else ""}</summary>'
            f'<div class="differs-text">{e(differs_text(r["differs"]))}</div></details></td>')


def report_link(r: dict, out: Path | None) -> str:
    folder = Path(r["run_dir"])
    target = folder / "report.md" if (folder / "report.md").is_file() else folder / "results.json"
    base = out.resolve().parent if out is not None else Path.cwd()
    href = safe_href(Path(os.path.relpath(target.resolve(), base)).as_posix())
    return f'<a href="{e(href)}" title="{e(target.name)}">{e(r["study"])}</a>'


def render_html(rows: list[dict], ablations: list[str], out: Path | None = None) -> str:
    show_differs = any(r["differs"] for r in rows)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>bench leaderboard</title><style>{CSS}</style></head><body>",
             "<h1>bench leaderboard</h1>",
             f'<p class="meta">{len({r["run"] for r in rows})} run(s), {len(rows)} rows. Click a column to sort; '
             "a baseline's train-time variants stay under it.</p>"]
    for task_rows in groups(rows):
        first = task_rows[0]
        aliases = ", ".join(dict.fromkeys(r["task"] for r in task_rows))
        metric = first["metric"]
        parts.append(f'<section><h2>{e(aliases)}<span class="spec">{e(first["task_spec"])}</span></h2>')
        parts.append(f'<p class="meta">{e(first["task_kind"])} · primary metric <b>{e(metric)}</b> · chance '
                     f"{fmt(chance_of(task_rows))} (majority-class predictor)</p>")
        head = ['<th class="num">#</th>', '<th title="links to the run\'s report">run</th>',
                "<th>architecture</th>", '<th class="num">params</th>', "<th>variant</th>",
                f'<th class="num">{e(metric)}</th>', "<th>verdict</th>", '<th class="num">D dense − D global</th>',
                *(f'<th class="num">{e(label)}</th>' for label in labels(rows, ablations))]
        head += ["<th>differs</th>"] if show_differs else []
        parts.append(f'<table class="lb"><thead><tr>{"".join(head)}</tr></thead>')
        for unit in units(task_rows):
            parts.append('<tbody class="unit">')
            for r in unit:
                variant = r["variant"] != "baseline"
                cls = " ".join(c for c in ("variant" if variant else "", "near" if r["near_chance"] else "") if c)
                tds = [num_td(r["rank"], "" if r["rank"] is None else str(r["rank"])),
                       "<td></td>" if variant else f"<td>{report_link(r, out)}</td>"]
                tds += ["<td></td>" if variant else
                        f'<td class="arch">{e(r["architecture"])}<span class="arch-spec">{e(r["arch_spec"])}</span></td>',
                        num_td(r["n_params"], params_text(r["n_params"]),
                               f"{r['n_params']:,} parameters" if r["n_params"] else ""),
                        f'<td class="variant-name">{"↳ " if variant else ""}{e(r["variant"])}</td>',
                        metric_td(r), verdict_td(r), difference_td(r), *(d_td(r, a) for a in ablations)]
                if show_differs:
                    tds.append("<td></td>" if variant else differs_td(r))
                parts.append(f'<tr class="{cls}">' if cls else "<tr>")
                parts.append("".join(tds) + "</tr>")
            parts.append("</tbody>")
        parts.append("</table></section>")
    parts.append(
        f"<footer><p>Ranking: {e(RANKING)}; {e(MERGE)}. D = identity dependence: the share of the above-chance "
        "score lost when the identity paths are ablated; S = identity sufficiency. Score: mean ± sd over seeds "
        "(n seeds). D: on the rows the verdict covers where it has an interval, its median over seeds with that "
        "interval in brackets (over seeds and test examples; 95%, or a sequential study's per-look level; none "
        "below 6 seeds); else the mean over seeds with a "
        "95% t-interval over seeds; one seed: its bootstrap over test "
        "examples; hover a number for its source. ≈ chance: the score is above chance by less than 10% of the headroom, so its D is not "
        "meaningful. Verdict: the call on D dense − D global per architecture and ablation (★ the study's "
        "headline); D dense − D global: its median over seeds with the verdict's interval over seeds and test "
        "examples where it has one; "
        "differs: the config keys in which the runs differ (click to open).</p></footer>")
    parts.append(f"<script>{JS}</script></body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------- LaTeX
# Every table fits the column (or with ``--wide`` the text width) and the page whatever runs it holds: its
# widths and heights are estimated from what it holds, conservatively, in pt of \footnotesize, against budgets
# below the narrowest common article (a4, two columns: \columnwidth 221 pt, \textwidth 452 pt, \textheight 550 pt
# on letter paper). D columns that would not fit beside each other continue in another table with the same rows
# (at most ``PANEL[wide]`` a table); rows that would not fit the page continue in another float ("continued"),
# so no table is shrunk and none is too large for a page. tests/bench/test_leaderboard_paper.py compiles every
# pair of the committed runs (and all of them together) and finds no Overfull \hbox and no "Float too large".
PANEL = {False: 2, True: 6}
WIDTH = {False: 214.0, True: 440.0}  # pt
HEIGHT = 480.0  # pt a float, caption and legend included (an article's \textheight: 550 pt on letter paper)
ROW, GAP, RULE = 9.5, 1.0, 4.5  # pt: a \footnotesize row, the gap under an interval line, a booktabs rule
CHAR = {"name": 4.4, "text": 4.6, "tt": 4.3, "script": 3.9, "caption": 4.6, "legend": 3.9}  # pt per character (generous)
SEP = 8.0  # pt between two columns (2 \tabcolsep)
NARROW, WIDE = 0.2, 0.74  # the setup table's two text columns, shares of the line (with the gap: under 1)
ABSOLUTE_PATH = re.compile(r'(?<![\w.])(?:[A-Za-z]:[\\/]+|~[\\/]+|/+)[^\s",;)\]]+')
SCALES = {"balanced_accuracy": "balanced accuracy",
          "recognition_balanced_accuracy": "recognition (balanced accuracy over the object classes)",
          "recognition": "recognition (balanced accuracy over the object classes)"}
MEDIAN_SEEDS = 6  # below this many seeds no distribution-free interval of a median exists (bench.stats)


def no_paths(text: str) -> str:
    """``root="/home/me/data/voc"`` as ``root=".../voc"``: an absolute path names the author's machine, not
    what was run; relative paths are kept."""
    def short(m: re.Match) -> str:
        parts = [p for p in re.split(r"[\\/]+", m.group(0)) if p and p != "~" and not p.endswith(":")]
        return ".../" + parts[-1] if parts else "..."
    return ABSOLUTE_PATH.sub(short, text)


def tex(text: object) -> str:
    """A name or spec as LaTeX text (``bench.markdown.latex``), absolute paths shortened (``no_paths``)."""
    return latex(no_paths(str(text)))


def tex_long(text: object, every: int = 0) -> str:
    """Like ``tex``, for notes that wrap: a line may also break after ``_ . / , =`` (a long spec or key), and with
    ``every``, inside a run of more than ``every`` characters without one (a long word of an alias, in a narrow
    box)."""
    if every > 0:
        words = re.split(r"([_./,=\s]+)", no_paths(str(text)))
        out = "".join(r"\allowbreak{}".join(latex(w[i:i + every]) for i in range(0, len(w), every))
                      if len(w) > every else latex(w) for w in words)
    else:
        out = tex(text)
    for mark in (r"\_", ".", "/", ",", "="):
        out = out.replace(mark, mark + r"\allowbreak{}")
    return out


def scale_text(scale: str | None) -> str:
    return SCALES.get(scale or "balanced_accuracy", str(scale).replace("_", " "))


def num(x: float | None) -> str:
    return "---" if x is None else f"${x:.3f}$"


def interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else rf"{{\scriptsize $[{low:.3f}, {high:.3f}]$}}"


def lines_of(text: str, width: float, per_char: float) -> int:
    """How many lines ``text`` (plain, as printed) takes in a box ``width`` pt wide."""
    return max(1, -(-int(len(text) * per_char) // max(int(width), 1)))


def printed(tex_text: str) -> str:
    """Roughly what a LaTeX string prints: commands and braces dropped (for the size estimates)."""
    out = re.sub(r"\\(?:allowbreak|strut|raggedright|quad|scriptsize|footnotesize|par|smallskip)\b(?:\{\})?", "", tex_text)
    out = re.sub(r"\\(?:textit|texttt|textsuperscript|mathrm|ref)\{", "{", out)
    out = re.sub(r"\\text(?:asciitilde|asciicircum|backslash|less|greater|bar)\{\}", "x", out)
    return re.sub(r"[{}$\\]", "", out)


def run_keys(rows: list[dict]) -> dict[int, str]:
    """A, B, C, ... for the runs in the order given (R27 on from the 27th)."""
    return {run: chr(65 + i) if i < 26 else f"R{i + 1}" for i, run in enumerate(sorted({r["run"] for r in rows}))}


NAME_CHARS = 14  # a longer alias or variant wraps in a box of NAME_CHARS / 2 em


def name_cell(name: str, longest: int = NAME_CHARS) -> str:
    """A model's alias or variant in a cell: a long one wraps in a narrow box instead of widening the table."""
    if len(name) <= longest:
        return tex(name)
    return rf"\parbox[t]{{{longest // 2}em}}{{\raggedright {tex_long(name, NAME_CHARS * 2 // 3)}\strut}}"


def name_size(name: str, indent: bool) -> tuple[float, int]:
    """(width in pt, lines) of ``name_cell(name)``, ``indent``: after a \\quad (a variant)."""
    em = 8.0
    extra = em if indent else 0.0
    if len(name) <= NAME_CHARS:
        return extra + len(name) * CHAR["name"], 1
    return extra + NAME_CHARS // 2 * em, lines_of(name, NAME_CHARS // 2 * em, CHAR["text"]) + 1


def column_heads(rows: list[dict], ablations: list[str]) -> list[str]:
    """Short headings, ``$D_{1}$``, ``$S_{5}$``: the measure's letter and the ablation's number in the legend."""
    return [rf"${label[0]}_{{{i}}}$" for i, label in enumerate(labels(rows, ablations), 1)]


def d_source(r: dict, ablation: str) -> str | None:
    """What the row's D cell shows: ``verdict`` (the verdict's median with its interval), ``seeds`` (the mean
    with a t-interval over seeds), ``seed`` (one seed with its bootstrap interval), ``plain`` (a value alone),
    None (no value)."""
    if d_of(r, ablation)[0] is None:
        return None
    ci = r["intervals"].get(ablation)
    return ci[1] if ci else "plain"


def d_cells(r: dict, ablations: list[str]) -> tuple[list[str], list[str]]:
    """Each ablation's D on this row (the interval's own estimate where it has one; the verdict's median marked
    with a star), and its interval."""
    means, cis = [], []
    for a in ablations:
        m = d_of(r, a)[0]
        ci = r["intervals"].get(a)
        if ci and ci[2] is not None:
            m = ci[2]
        means.append(num(m) if m is None or d_source(r, a) != "verdict" else f"${m:.3f}^{{*}}$")
        cis.append(interval(*ci[0]) if ci and m is not None else "")
    return means, cis


DIGITS = {"foot": {"-": 6.3, ".": 2.3, ",": 3.6, "[": 2.3, "]": 2.3, "*": 3.5, "+": 6.3},
          "script": {"-": 5.5, ".": 2.0, ",": 3.2, "[": 2.0, "]": 2.0, "*": 3.0, "+": 5.5}}
DIGIT = {"foot": 4.25, "script": 4.0}  # pt: a digit of Computer Modern at 8 pt (cmr8) and at 7 pt (cmr7)


def number_width(text: str, size: str) -> float:
    """The width (pt) of a number or an interval set in math at footnotesize (``foot``) or scriptsize."""
    return sum(DIGITS[size].get(ch, DIGIT[size]) for ch in text) * 1.04


def d_width(r: dict, ablation: str) -> float:
    """The estimated width (pt) of the row's D cell: its number, or its interval under it, whichever is wider."""
    mean = d_of(r, ablation)[0]
    ci = r["intervals"].get(ablation)
    if mean is None:
        return 12.0
    width = number_width(f"{(ci[2] if ci and ci[2] is not None else mean):.3f}*", "foot")
    if ci:
        low, high = ci[0]
        width = max(width, number_width(f"[{low:.3f},{high:.3f}]", "script"))
    return width


def score_width(r: dict) -> float:
    mean, sd, n = r["value"]
    if mean is None:
        return 12.0
    return max(number_width(f"{mean:.3f}", "foot") + (4.0 if r["near_chance"] else 0.0),
               number_width(f"+{sd:.3f}", "script") if n > 1 else 0.0)


def panel_columns(rows: list[dict], ablations: list[str], keys: dict[int, str], wide: bool) -> list[list[int]]:
    """The ablations (indices) of each table: as many D columns beside the run, model (and, in the first, score)
    columns as fit ``WIDTH[wide]`` (at most ``PANEL[wide]``; one at least)."""
    fixed, score, widths = column_widths(rows, ablations, keys)
    out: list[list[int]] = []
    used = fixed + score
    for i, w in enumerate(widths):
        if out and len(out[-1]) < PANEL[wide] and used + w <= WIDTH[wide]:
            out[-1].append(i)
            used += w
        else:
            out.append([i])
            used = fixed + (score if len(out) == 1 else 0.0) + w
    return out or [[]]


def column_widths(rows: list[dict], ablations: list[str], keys: dict[int, str]) -> tuple[float, float, list[float]]:
    """Estimated widths (pt) of a models' table's columns: (run and model, score, each ablation's D)."""
    fixed = max(name_size(r["architecture"] if r["variant"] == "baseline" else r["variant"], r["variant"] != "baseline")[0]
                for r in rows) if rows else 0.0
    if len(keys) > 1:
        fixed += SEP + max([len(k) * 7.0 for k in keys.values()] + [17.0])  # the keys, or the heading "Run"
    score = SEP + max([score_width(r) for r in rows] + [24.0])
    widths = [SEP + max([d_width(r, a) for r in rows] + [14.0]) for a in ablations]
    return fixed, score, widths


def heading_row(ncol: int, title: str, width: float) -> str:
    """A task's heading row across the table: on one line where it fits ``width`` pt (the table's estimated
    width), else wrapped in a box that wide (a long alias breaks after its underscores, or inside a long word)."""
    if len(printed(title)) * CHAR["text"] <= width:
        return rf"\midrule \multicolumn{{{ncol}}}{{@{{}}l}}{{{title}}} \\"
    return rf"\midrule \multicolumn{{{ncol}}}{{@{{}}l}}{{\parbox[t]{{{width:.0f}pt}}{{\raggedright {title}\strut}}}} \\"


def pack(sections: list[tuple[str, str, list[tuple[list[str], float]]]], budgets: tuple[float, float]) \
        -> list[list[str]]:
    """Table bodies, each within its height budget (``budgets``: the first body's, the next ones'): ``sections``
    are (heading line, its continued form, blocks of (lines, height)); a section's heading comes before its
    first block in each body it spans (the continued form after the first), and a block is never split."""
    bodies: list[list[str]] = [[]]
    room = budgets[0]
    for heading, continued, blocks in sections:
        here = started = False  # the section's heading is in the current body; the section has begun
        for lines, height in blocks:
            head = RULE + ROW if heading else 0.0
            need = height + (0.0 if here else head)
            if need > room and bodies[-1]:
                bodies.append([])
                room, here, need = budgets[1], False, height + head
            if heading and not here:
                bodies[-1].append(continued if started else heading)
            bodies[-1] += lines
            room -= need
            here = started = True
    return [b for b in bodies if b]


def float_of(env: str, spec: str, header: str, body: list[str], after: list[str]) -> list[str]:
    return [rf"\begin{{{env}}}[tbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule", *([header] if header else []), *body, r"\bottomrule",
            r"\end{tabular}", *after, rf"\end{{{env}}}", ""]


def text_height(text: str, width: float, per_char: float, line: float = ROW) -> float:
    return lines_of(printed(text), width, per_char) * line + 6.0


def model_tables(rows: list[dict], ablations: list[str], heads: list[str], labels_: list[str], keys: dict[int, str],
                 tasks: dict[str, str], wide: bool, env: str) -> list[str]:
    """The models' tables: per panel of D columns (``panel_columns``) one float or, when its rows are taller than
    a page, several (continued): a heading row per task (its score metric and chance), a row per model (a
    variant indented under its baseline), the intervals on a line of their own under the numbers."""
    multi = len(keys) > 1
    out: list[str] = []
    panels_ = panel_columns(rows, ablations, keys, wide)
    width = WIDTH[wide]
    fixed_w, score_w, widths = column_widths(rows, ablations, keys)
    for p, idx in enumerate(panels_):
        part, part_heads, part_labels = [ablations[i] for i in idx], [heads[i] for i in idx], [labels_[i] for i in idx]
        score = p == 0
        spec = "@{}" + ("l" if multi else "") + "l" + ("r" if score else "") + "r" * len(part) + "@{}"
        ncol = len(spec.replace("@{}", ""))
        table_w = min(width, fixed_w + (score_w if score else 0.0) + sum(widths[i] for i in idx))
        header = " & ".join((["Run"] if multi else []) + ["Model"] + (["Score"] if score else []) + part_heads) + r" \\"
        sections = []
        for task_rows in groups(rows):
            first = task_rows[0]
            blocks = []
            for unit in units(task_rows):
                lines, height = [], 0.0
                for r in unit:
                    means, cis = d_cells(r, part)
                    if not score and all(m == "---" for m in means):
                        continue
                    name = r["architecture"] if r["variant"] == "baseline" else r["variant"]
                    model = name_cell(name) if r["variant"] == "baseline" else rf"\quad {name_cell(name)}"
                    cells = ([keys[r["run"]]] if multi else []) + [model]
                    under = [""] * len(cells)
                    if score:
                        mean, sd, n = r["value"]
                        cells.append(num(mean) + (r"$^\dagger$" if r["near_chance"] else ""))
                        under.append(rf"{{\scriptsize $\pm {sd:.3f}$}}" if mean is not None and n > 1 else "")
                    lines.append(" & ".join(cells + means) + r" \\")
                    rows_high = name_size(name, r["variant"] != "baseline")[1]
                    if any(under + cis):
                        lines.append(" & ".join(under + cis) + r" \\[1pt]")
                        rows_high = max(rows_high, 2)
                    height += rows_high * ROW + GAP
                if lines:
                    blocks.append((lines, height))
            if not blocks:
                continue
            aliases = ", ".join(dict.fromkeys(r["task"] for r in task_rows))
            title = (rf"\textit{{{tex_long(aliases, 16)}}}\textsuperscript{{{tasks[first['task_spec']]}}} --- Score: "
                     rf"{tex(first['metric'])}, chance {num(chance_of(task_rows))}")
            lines_high = lines_of(printed(title + " (continued)"), table_w, CHAR["text"])
            if lines_high > 1:  # a wrapped heading is taller: its first block carries the extra lines
                blocks[0] = (blocks[0][0], blocks[0][1] + (lines_high - 1) * ROW)
            sections.append((heading_row(ncol, title, table_w), heading_row(ncol, title + " (continued)", table_w),
                             blocks))
        label = "tab:bench-leaderboard" + (f"-{p + 1}" if p else "")
        note = legend(rows, part_heads, part_labels, keys)
        caption = (leaderboard_caption(rows, ablations) if not p
                   else rf"Table~\ref{{tab:bench-leaderboard}}, continued: {', '.join(part_heads)}.")
        fixed = 2 * RULE + ROW + 12.0  # rules, the column headings, the caption's skip
        first = HEIGHT - fixed - text_height(caption, width, CHAR["caption"]) - \
            text_height(note, width, CHAR["legend"], 8.0)
        cont_caption = rf"Table~\ref{{{label}}}, continued."
        rest = HEIGHT - fixed - text_height(cont_caption, width, CHAR["caption"])
        bodies = pack(sections, (first, rest))
        for b, body in enumerate(bodies):
            after = [r"\par\smallskip", r"\begin{minipage}{\linewidth}\scriptsize\raggedright", note,
                     r"\end{minipage}", rf"\caption{{{caption}}}", rf"\label{{{label}}}"] if not b else \
                [rf"\caption{{{cont_caption}}}"]
            out += float_of(env, spec, header, body, after)
    return out


def leaderboard_caption(rows: list[dict], ablations: list[str]) -> str:
    """The first models' table's caption: what the score and each kind of D cell that occurs in it is."""
    sources = {d_source(r, a) for r in rows for a in ablations} - {None}
    kinds = []
    if "seeds" in sources:
        kinds.append(r"the mean over seeds with its 95\% t-interval over seeds under it")
    if "seed" in sources:
        kinds.append(r"one seed's value with its 95\% bootstrap interval over test examples under it")
    if "verdict" in sources:
        kinds.append(r"$^{*}$: the verdict's median over seeds with its interval over seeds and test examples "
                     r"under it (at the level of Table~\ref{tab:bench-verdict}), where the verdict has an interval")
    if "plain" in sources:
        kinds.append("no interval under it: one seed without a bootstrap interval")
    near = r" $^\dagger$: within 10\% of the headroom above chance, $D$ not meaningful." \
        if any(r["near_chance"] for r in rows) else ""
    return (r"Identity dependence $D$ (the share of the above-chance score lost when the identity paths are ablated, "
            r"on the scale the legend names; $S$: identity sufficiency) per model. Score: the task's primary metric "
            r"(named in the task's heading with its chance level), mean over seeds, $\pm$ sd under it. $D$: "
            + "; ".join(kinds) + "." + near + f" {tex(MERGE.capitalize())}.")


def legend(rows: list[dict], heads: list[str], labels_: list[str], keys: dict[int, str]) -> str:
    """Under a table: the run keys (each with D's scale), the column headings spelled out (paragraph text: it
    wraps)."""
    names = {r["run"]: (r["study"], r.get("scale")) for r in rows}
    one_scale = len({s for _, s in names.values()}) == 1
    scale = "" if not one_scale else rf" $D$ on {tex(scale_text(next(iter(names.values()))[1]))}."

    def run(i: int) -> str:
        study, s = names[i]
        return tex_long(study) + ("" if one_scale else rf" ($D$ on {tex(scale_text(s))})")
    runs = ("Runs: " + "; ".join(rf"{keys[i]}: {run(i)}" for i in sorted(keys)) if len(keys) > 1
            else f"Run: {run(next(iter(keys)))}")
    cols = "; ".join(f"{h}: {tex(label)}" for h, label in zip(heads, labels_))
    return f"{runs}.{scale} {cols}. " + r"Task and model parameters: Table~\ref{tab:bench-setup}."


def tt(text: object) -> str:
    """A spec in typewriter type, breakable (``tex_long``; inside a word of more than 24 characters too)."""
    return rf"\texttt{{{tex_long(text, 24)}}}"


def compact(value: object) -> object:
    """A list of five or more consecutive whole numbers (seeds) as ``0..39``; anything else as it is."""
    if isinstance(value, list) and len(value) >= 5 and all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value) \
            and value == list(range(value[0], value[0] + len(value))):
        return f"{value[0]}..{value[-1]}"
    return value


def text_cell(text: str, share: float) -> str:
    """Text that wraps ragged-right in a box ``share`` of the line wide (a cell of the setup table)."""
    return rf"\parbox[t]{{{share}\linewidth}}{{\raggedright {text}\strut}}"


def chunks(text: str, size: int) -> list[str]:
    """``text`` (``k=v, k=v, ...``) in pieces of at most about ``size`` characters, cut between items (an item
    longer than ``size`` cut inside), so each piece is a table row that fits a page."""
    out: list[str] = []
    for item in text.split(", "):
        while len(item) > size:
            out.append(item[:size])
            item = item[size:]
        if out and len(out[-1]) + 2 + len(item) <= size:
            out[-1] += ", " + item
        else:
            out.append(item)
    return out


def setup_tables(rows: list[dict], keys: dict[int, str], tasks: dict[str, str], env: str, wide: bool) -> list[str]:
    """What the short names stand for: each run (its configuration differences), each task (its registered name
    and parameters) and each model (likewise, with its size); text wraps in its column, a long run's differences
    over several rows, and rows that do not fit a page continue in another float."""
    width = WIDTH[wide]
    wide_w, narrow_w = WIDE * width, NARROW * width
    per_row = int(8 * wide_w / CHAR["tt"])  # about 8 lines of the run column a row

    def block(left: str, right: str, right_plain: str, left_plain: str = "") -> tuple[list[str], float]:
        h = max(lines_of(right_plain, wide_w, CHAR["tt"]), lines_of(left_plain, narrow_w, CHAR["text"]) if left_plain
                else 1) * ROW + GAP
        return [rf"{left} & {right} \\"], h

    names = {r["run"]: (r["study"], r["differs"]) for r in rows}
    runs = []
    for i in sorted(keys):
        study, differs = names[i]
        key = keys[i] if len(keys) > 1 else ""
        text = differs_text({k: compact(v) for k, v in differs.items()})
        pieces = chunks(text, per_row) if differs else []
        first = tex_long(study, 24) + (rf"; differs in \texttt{{{tex_long(pieces[0], 24)}}}" if pieces else "")
        runs.append(block(key, text_cell(first, WIDE), study + "; differs in " + (pieces[0] if pieces else "")))
        runs += [block("", text_cell(tt(piece), WIDE), piece) for piece in pieces[1:]]
    task_blocks = [block(rf"\textsuperscript{{{mark}}}", text_cell(tt(spec), WIDE), no_paths(spec))
                   for spec, mark in tasks.items()]
    models: dict[tuple[str, str], list[str]] = {}
    size: dict[tuple[str, str], int | None] = {}
    for r in rows:
        runs_of = models.setdefault((r["architecture"], r["arch_spec"]), [])
        size[(r["architecture"], r["arch_spec"])] = size.get((r["architecture"], r["arch_spec"])) or r["n_params"]
        if keys[r["run"]] not in runs_of:
            runs_of.append(keys[r["run"]])
    model_blocks = []
    for (alias, spec), runs_of in models.items():
        n = size[(alias, spec)]
        where = f" ({', '.join(runs_of)})" if len(keys) > 1 else ""
        params = f", {params_text(n)} parameters" if n else ""
        model_blocks.append(block(text_cell(tex_long(alias, 8) + where, NARROW), text_cell(tt(spec) + params, WIDE),
                                  no_paths(spec) + params, alias + where))
    sections = [(rf"\midrule \multicolumn{{2}}{{@{{}}l}}{{\textit{{{name}}}}} \\",
                 rf"\midrule \multicolumn{{2}}{{@{{}}l}}{{\textit{{{name} (continued)}}}} \\", blocks)
                for name, blocks in (("Runs", runs), ("Tasks", task_blocks), ("Models", model_blocks)) if blocks]
    caption = (r"Setup of Table~\ref{tab:bench-leaderboard}: the runs (by folder or study name) and the configuration "
               r"keys in which they differ, the tasks (superscripts) and the models, each with the parameters it was "
               r"run with.")
    cont = r"Table~\ref{tab:bench-setup}, continued."
    fixed = 2 * RULE + 12.0
    bodies = pack(sections, (HEIGHT - fixed - text_height(caption, width, CHAR["caption"]),
                             HEIGHT - fixed - text_height(cont, width, CHAR["caption"])))
    out: list[str] = []
    for b, body in enumerate(bodies):
        body = [line.replace(r"\midrule ", "", 1) if k == 0 else line for k, line in enumerate(body)]
        after = [rf"\caption{{{caption}}}", r"\label{tab:bench-setup}"] if not b else [rf"\caption{{{cont}}}"]
        out += float_of(env, "@{}ll@{}", "", body, after)
    return out


def interval_note(h: dict) -> str:
    """The headline's interval on the run's line: its level, or why there is none."""
    est, low, high = h["difference"]
    if low is not None and high is not None:
        return rf"{confidence(h['alpha'])}\% interval"
    if h["seeds"] < MEDIAN_SEEDS:
        return rf"no interval: below {MEDIAN_SEEDS} seeds no distribution-free interval of the median exists"
    return "no interval"


def verdict_tables(rows: list[dict], env: str, wide: bool) -> list[str]:
    """Each run's headline, in its own small table: the pair (a line that wraps), then D_dense, D_global, their
    difference with its interval (on the line under it), the seeds and the call."""
    runs = {r["run"]: (r["study"], r.get("headlines") or []) for r in rows}
    if not any(heads for _, heads in runs.values()):
        return ["% no run has a verdict (the config names no dense/global pair)"]
    width = WIDTH[wide]
    blocks = []
    for _, (study, heads) in sorted(runs.items()):
        for h in heads:
            pair = (f"{tex(h['label'])}: " if h.get("label") else "") + \
                rf"{tex(h['dense_task'])} (dense) vs {tex(h['global_task'])} (global)"
            if "missing" in h:
                what = rf"{pair}; no headline: {tex(h['missing'])}"
            else:
                what = rf"{pair}, {tex(h['architecture'])}, {tex(h['ablation'])}; D on {tex(scale_text(h['scale']))}" \
                       rf"; {interval_note(h)}"
            text = rf"\textit{{{tex_long(study)}}}: {what}"
            lines = [r"\midrule", rf"\multicolumn{{5}}{{@{{}}l@{{}}}}{{\parbox[t]{{0.98\linewidth}}{{\raggedright"
                     rf" {text}\strut}}}} \\"]
            height = RULE + lines_of(printed(text), 0.98 * width, CHAR["text"]) * ROW
            if "missing" not in h:
                est, low, high = h["difference"]
                lines.append(rf"{num(h['dense'][0])} & {num(h['global_'][0])} & {num(est)} & {h['seeds']} & "
                             rf"{tex(h['call'])} \\")
                lines += [rf"& & {interval(low, high)} & & \\"] if interval(low, high) else []
                height += 2 * ROW + GAP
            blocks.append((lines, height))
    caption = (r"Verdict: each run's headline. $D_{\mathrm{dense}}$, $D_{\mathrm{global}}$: the identity dependence "
               r"of the dense and the global task's model, medians over seeds, on the scale the run's line names; "
               r"$\Delta = D_{\mathrm{dense}} - D_{\mathrm{global}}$, median over seeds, with its interval over seeds "
               r"and test examples under it where there is one (its level on the run's line); Seeds: the seeds it "
               r"rests on; Call: the study's pre-specified decision on $\Delta$.")
    cont = r"Table~\ref{tab:bench-verdict}, continued."
    fixed = 2 * RULE + ROW + 12.0
    bodies = pack([("", "", blocks)], (HEIGHT - fixed - text_height(caption, width, CHAR["caption"]),
                                       HEIGHT - fixed - text_height(cont, width, CHAR["caption"])))
    header = r"$D_{\mathrm{dense}}$ & $D_{\mathrm{global}}$ & $\Delta$ & Seeds & Call \\"
    out: list[str] = []
    for b, body in enumerate(bodies):
        after = [rf"\caption{{{caption}}}", r"\label{tab:bench-verdict}"] if not b else [rf"\caption{{{cont}}}"]
        out += float_of(env, "@{}rrrrl@{}", header, [line for line in body if line], after)
    return out


def render_latex(rows: list[dict], ablations: list[str], wide: bool = False) -> str:
    """Booktabs tables for a manuscript, each its own float placed [tbp]: the models (score and D per ablation
    under short headings, as many D columns a table as fit, the next ones continued in another) in one column,
    or across the page with ``wide`` (``table*``); the setup (runs and their configuration differences, task
    and model parameters) as a second table; and the verdict (each run's headline) as its own small table. A
    table taller than a page continues in another float. Every name is escaped (``bench.markdown.latex``) and
    no absolute path is written (``no_paths``): a run is named by its folder or study name (``run_label``)."""
    keys = run_keys(rows)
    tasks = {spec: chr(97 + i) if i < 26 else str(i + 1) for i, spec in enumerate(dict.fromkeys(r["task_spec"] for r in rows))}
    heads = column_heads(rows, ablations)
    env = "table*" if wide else "table"
    lines = ["% bench leaderboard; needs \\usepackage{booktabs}"]
    lines += model_tables(rows, ablations, heads, labels(rows, ablations), keys, tasks, wide, env)
    lines += [*setup_tables(rows, keys, tasks, env, wide), *verdict_tables(rows, env, wide)]
    return "\n".join(lines)
