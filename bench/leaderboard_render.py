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
        "(n seeds). D: on the rows the verdict covers, its median over seeds with its interval in brackets (over "
        "seeds and test examples; 95%, or a sequential study's per-look level); else the mean over seeds with a "
        "95% t-interval over seeds; one seed: its bootstrap over test "
        "examples; hover a number for its source. ≈ chance: the score is above chance by less than 10% of the headroom, so its D is not "
        "meaningful. Verdict: the call on D dense − D global per architecture and ablation (★ the study's "
        "headline); D dense − D global: its median over seeds with the verdict's interval over seeds and test "
        "examples; "
        "differs: the config keys in which the runs differ (click to open).</p></footer>")
    parts.append(f"<script>{JS}</script></body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------- LaTeX
# How many ablation columns one tabular holds: a single column (about 230 pt in a two-column article) has
# room for two D columns beside the run, model and score; a full-width table* (``--wide``) for six. More
# ablations continue in another panel of the same table, with the same rows.
PANEL = {False: 2, True: 6}
NARROW, WIDE = 0.2, 0.74  # the setup table's two text columns, shares of the line (with the gap: under 1)
ABSOLUTE_PATH = re.compile(r'(?<![\w.])(?:[A-Za-z]:[\\/]+|~[\\/]+|/+)[^\s",;)\]]+')


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


def tex_long(text: object) -> str:
    """Like ``tex``, for notes that wrap: a line may also break after ``_ . / , =`` (a long spec or key)."""
    out = tex(text)
    for mark in (r"\_", ".", "/", ",", "="):
        out = out.replace(mark, mark + r"\allowbreak{}")
    return out


def num(x: float | None) -> str:
    return "---" if x is None else f"${x:.3f}$"


def interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else rf"{{\scriptsize $[{low:.3f}, {high:.3f}]$}}"


def run_keys(rows: list[dict]) -> dict[int, str]:
    """A, B, C, ... for the runs in the order given (R27 on from the 27th)."""
    return {run: chr(65 + i) if i < 26 else f"R{i + 1}" for i, run in enumerate(sorted({r["run"] for r in rows}))}


def name_cell(name: str, longest: int = 14) -> str:
    """A model's alias or variant in a cell: a long one wraps in a narrow box instead of widening the table."""
    if len(name) <= longest:
        return tex(name)
    return rf"\parbox[t]{{{longest // 2}em}}{{\raggedright {tex_long(name)}\strut}}"


def column_heads(rows: list[dict], ablations: list[str]) -> list[str]:
    """Short headings, ``$D_{1}$``, ``$S_{5}$``: the measure's letter and the ablation's number in the legend."""
    return [rf"${label[0]}_{{{i}}}$" for i, label in enumerate(labels(rows, ablations), 1)]


def d_cells(r: dict, ablations: list[str]) -> tuple[list[str], list[str]]:
    """Each ablation's D on this row (the interval's own estimate where it has one), and its interval."""
    means, cis = [], []
    for a in ablations:
        m = d_of(r, a)[0]
        ci = r["intervals"].get(a)
        if ci and ci[2] is not None:
            m = ci[2]
        means.append(num(m))
        cis.append(interval(*ci[0]) if ci and m is not None else "")
    return means, cis


def model_panel(rows: list[dict], ablations: list[str], columns: list[str], keys: dict[int, str],
                tasks: dict[str, str], score: bool) -> list[str]:
    """One tabular: a heading row per task, a row per model (a variant indented under its baseline), the
    intervals on a line of their own under the numbers; rows with nothing in these columns left out."""
    multi = len(keys) > 1
    spec = "@{}" + ("l" if multi else "") + "l" + ("r" if score else "") + "r" * len(ablations) + "@{}"
    width = len(spec.replace("@{}", ""))
    head = (["Run"] if multi else []) + ["Model"] + (["Score"] if score else []) + columns
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(head) + r" \\"]
    for task_rows in groups(rows):
        first = task_rows[0]
        body = []
        for r in task_rows:
            means, cis = d_cells(r, ablations)
            if not score and all(m == "---" for m in means):
                continue
            model = name_cell(r["architecture"]) if r["variant"] == "baseline" else rf"\quad {name_cell(r['variant'])}"
            cells = ([keys[r["run"]]] if multi else []) + [model]
            under = [""] * len(cells)
            if score:
                mean, sd, n = r["value"]
                cells.append(num(mean) + (r"$^\dagger$" if r["near_chance"] else ""))
                under.append(rf"{{\scriptsize $\pm {sd:.3f}$}}" if mean is not None and n > 1 else "")
            body.append(" & ".join(cells + means) + r" \\")
            if any(under + cis):
                body.append(" & ".join(under + cis) + r" \\[1pt]")
        if not body:
            continue
        aliases = ", ".join(dict.fromkeys(r["task"] for r in task_rows))
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{@{{}}l}}{{\textit{{{tex(aliases)}}}"
                  rf"\textsuperscript{{{tasks[first['task_spec']]}}} --- {tex(first['metric'])}, chance "
                  rf"{num(chance_of(task_rows))}}} \\", *body]
    return lines + [r"\bottomrule", r"\end{tabular}"]


def legend(rows: list[dict], ablations: list[str], heads: list[str], keys: dict[int, str]) -> str:
    """Under a panel: the run keys and the panel's column headings spelled out (paragraph text: it wraps)."""
    names = {r["run"]: r["study"] for r in rows}
    runs = ("Runs: " + "; ".join(rf"{keys[i]}: {tex_long(names[i])}" for i in sorted(keys)) if len(keys) > 1
            else f"Run: {tex_long(next(iter(names.values())))}")
    cols = "; ".join(f"{h}: {tex(label)}" for h, label in zip(heads, labels(rows, ablations)))
    return f"{runs}. {cols}. " + r"Task and model parameters: Table~\ref{tab:bench-setup}."


def tt(text: object) -> str:
    """A spec in typewriter type, breakable (``tex_long``)."""
    return rf"\texttt{{{tex_long(text)}}}"


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


def setup_table(rows: list[dict], keys: dict[int, str], tasks: dict[str, str], env: str) -> list[str]:
    """What the short names stand for, as a second table: each run (its configuration differences), each task
    (its registered name and parameters) and each model (likewise, with its size). Text wraps in its column."""
    body = [r"\multicolumn{2}{@{}l}{\textit{Runs}} \\"]
    names = {r["run"]: (r["study"], r["differs"]) for r in rows}
    for i in sorted(keys):
        study, differs = names[i]
        extra = rf"; differs in \texttt{{{tex_long(differs_text({k: compact(v) for k, v in differs.items()}))}}}" \
            if differs else ""
        body.append(rf"{keys[i] if len(keys) > 1 else ''} & {text_cell(tex_long(study) + extra, WIDE)} \\")
    body += [r"\midrule", r"\multicolumn{2}{@{}l}{\textit{Tasks}} \\"]
    body += [rf"\textsuperscript{{{mark}}} & {text_cell(tt(spec), WIDE)} \\" for spec, mark in tasks.items()]
    body += [r"\midrule", r"\multicolumn{2}{@{}l}{\textit{Models}} \\"]
    models: dict[tuple[str, str], list[str]] = {}
    size: dict[tuple[str, str], int | None] = {}
    for r in rows:
        runs = models.setdefault((r["architecture"], r["arch_spec"]), [])
        size[(r["architecture"], r["arch_spec"])] = size.get((r["architecture"], r["arch_spec"])) or r["n_params"]
        if keys[r["run"]] not in runs:
            runs.append(keys[r["run"]])
    for (alias, spec), runs in models.items():
        n = size[(alias, spec)]
        where = f" ({', '.join(runs)})" if len(keys) > 1 else ""
        body.append(rf"{text_cell(tex_long(alias) + where, NARROW)} & "
                    rf"{text_cell(tt(spec) + (f', {params_text(n)} parameters' if n else ''), WIDE)} \\")
    return [rf"\begin{{{env}}}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
            r"\begin{tabular}{@{}ll@{}}", r"\toprule", *body, r"\bottomrule",
            r"\end{tabular}", r"\caption{Setup of Table~\ref{tab:bench-leaderboard}: the runs (by folder or study name) "
            r"and the configuration keys in which they differ, the tasks (superscripts) and the models, each with the "
            r"parameters it was run with.}", r"\label{tab:bench-setup}", rf"\end{{{env}}}"]


def verdict_table(rows: list[dict]) -> list[str]:
    """Each run's headline, its own small table: the pair (a line that wraps), then D_dense, D_global, their
    difference with its 95% interval (on the line under it), the seeds and the call."""
    runs = {r["run"]: (r["study"], r.get("headlines") or []) for r in rows}
    if not any(heads for _, heads in runs.values()):
        return ["% no run has a verdict (the config names no dense/global pair)"]
    lines = [r"\begin{table}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
             r"\begin{tabular}{@{}rrrrl@{}}", r"\toprule",
             r"$D_{\mathrm{dense}}$ & $D_{\mathrm{global}}$ & $\Delta$ & Seeds & Call \\"]
    for _, (study, heads) in sorted(runs.items()):
        for h in heads:
            pair = (f"{tex(h['label'])}: " if h.get("label") else "") + \
                rf"{tex(h['dense_task'])} (dense) vs {tex(h['global_task'])} (global)"
            if "missing" in h:
                what = rf"{pair}; no headline: {tex(h['missing'])}"
            else:
                what = (rf"{pair}, {tex(h['architecture'])}, {tex(h['ablation'])}; D on {tex(h['scale'].replace('_', ' '))}"
                        rf"; {confidence(h['alpha'])}\% interval")
            lines += [r"\midrule", rf"\multicolumn{{5}}{{@{{}}l@{{}}}}{{\parbox[t]{{0.98\linewidth}}{{\raggedright"
                      rf" \textit{{{tex_long(study)}}}: {what}}}}} \\"]
            if "missing" in h:
                continue
            est, low, high = h["difference"]
            lines.append(rf"{num(h['dense'][0])} & {num(h['global_'][0])} & {num(est)} & {h['seeds']} & "
                         rf"{tex(h['call'])} \\")
            lines += [rf"& & {interval(low, high)} & & \\"] if interval(low, high) else []
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{Verdict: each run's headline. $D_{\mathrm{dense}}$, $D_{\mathrm{global}}$: the identity "
              r"dependence of the dense and the global task's model, medians over seeds; $\Delta = D_{\mathrm{dense}} - "
              r"D_{\mathrm{global}}$, median over seeds, with its interval over seeds and test examples (under it; its "
              r"level on the run's line: 95\%, or a sequential study's per-look level); Seeds: the seeds "
              r"it rests on; Call: the study's pre-specified decision on $\Delta$.}", r"\label{tab:bench-verdict}",
              r"\end{table}"]
    return lines


def render_latex(rows: list[dict], ablations: list[str], wide: bool = False) -> str:
    """Booktabs tables for a manuscript, each its own float: the models (score and D per ablation under short
    headings, ``PANEL[wide]`` ablations a table, the next ones continued in another) in one column, or across
    the page with ``wide`` (``table*``); the setup (runs and their configuration differences, task and model
    parameters) as a second table; and the verdict (each run's headline) as its own small table. Every name is
    escaped (``bench.markdown.latex``) and no absolute path is written (``no_paths``): a run is named by its
    folder or study name (``run_label``)."""
    keys = run_keys(rows)
    tasks = {spec: chr(97 + i) if i < 26 else str(i + 1) for i, spec in enumerate(dict.fromkeys(r["task_spec"] for r in rows))}
    heads = column_heads(rows, ablations)
    env = "table*" if wide else "table"
    lines = ["% bench leaderboard; needs \\usepackage{booktabs}"]
    k = PANEL[wide]
    for start in range(0, max(len(ablations), 1), k):
        part, part_heads = ablations[start:start + k], heads[start:start + k]
        caption = (r"Identity dependence $D$ (the share of the above-chance score lost when the identity paths are "
                   r"ablated; $S$: identity sufficiency) per model. Score: mean over seeds, $\pm$ sd under it; $D$: "
                   r"where the verdict covers the row, its median over seeds with its interval under it (over seeds "
                   r"and test examples, at the level of Table~\ref{tab:bench-verdict}); else the mean over seeds with a "
                   r"95\% interval over seeds (one seed: bootstrap over test examples). $^\dagger$: within "
                   rf"10\% of the headroom above chance, $D$ not meaningful. {tex(MERGE.capitalize())}."
                   if not start else rf"Table~\ref{{tab:bench-leaderboard}}, continued: {', '.join(part_heads)}.")
        label = "tab:bench-leaderboard" + (f"-{start // k + 1}" if start else "")
        lines += [rf"\begin{{{env}}}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
                  *model_panel(rows, part, part_heads, keys, tasks, score=not start), r"\par\smallskip",
                  r"\begin{minipage}{\linewidth}\scriptsize\raggedright", legend(rows, part, part_heads, keys),
                  r"\end{minipage}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", rf"\end{{{env}}}", ""]
    lines += [*setup_table(rows, keys, tasks, env), "", *verdict_table(rows), ""]
    return "\n".join(lines)
