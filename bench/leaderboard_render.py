"""Leaderboard renderings for a paper: one self-contained HTML page and a LaTeX (booktabs) table.

The HTML has no network dependency (inline CSS and a few lines of JS that sort a table when its header
is clicked; a baseline's variants move with it), so it can be mailed or archived as one file. Both read
the rows of ``bench.leaderboard_table`` and nothing else of bench; ``bench.leaderboard`` picks one.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote, urlsplit

from bench.leaderboard_table import MERGE, RANKING, d_of, differs_text, labels
from bench.markdown import fmt

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
.differs{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;white-space:normal;max-width:220px}\ntd.verdicts{white-space:normal;min-width:150px;max-width:260px}
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
        title = {"verdict": "the verdict's estimate and 95% interval, over seeds and test examples",
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
        head = ['<th class="num">#</th>', '<th title="links to the run\'s report">run</th>']
        head += ["<th>differs</th>"] if show_differs else []
        head += ["<th>architecture</th>", '<th class="num">params</th>', "<th>variant</th>",
                 f'<th class="num">{e(metric)}</th>', *(f'<th class="num">{e(label)}</th>' for label in labels(rows, ablations)),
                 "<th>verdict</th>"]
        parts.append(f'<table class="lb"><thead><tr>{"".join(head)}</tr></thead>')
        for unit in units(task_rows):
            parts.append('<tbody class="unit">')
            for r in unit:
                variant = r["variant"] != "baseline"
                cls = " ".join(c for c in ("variant" if variant else "", "near" if r["near_chance"] else "") if c)
                tds = [num_td(r["rank"], "" if r["rank"] is None else str(r["rank"])),
                       "<td></td>" if variant else f"<td>{report_link(r, out)}</td>"]
                if show_differs:
                    tds.append("<td></td>" if variant else f'<td class="differs">{e(differs_text(r["differs"]))}</td>')
                tds += ["<td></td>" if variant else
                        f'<td class="arch">{e(r["architecture"])}<span class="arch-spec">{e(r["arch_spec"])}</span></td>',
                        num_td(r["n_params"], params_text(r["n_params"]),
                               f"{r['n_params']:,} parameters" if r["n_params"] else ""),
                        f'<td class="variant-name">{"↳ " if variant else ""}{e(r["variant"])}</td>',
                        metric_td(r), *(d_td(r, a) for a in ablations), verdict_td(r)]
                parts.append(f'<tr class="{cls}">' if cls else "<tr>")
                parts.append("".join(tds) + "</tr>")
            parts.append("</tbody>")
        parts.append("</table></section>")
    parts.append(
        f"<footer><p>Ranking: {e(RANKING)}; {e(MERGE)}. D = identity dependence: the share of the above-chance "
        "score lost when the identity paths are ablated; S = identity sufficiency. Score: mean ± sd over seeds "
        "(n seeds). D: mean over seeds with a 95% interval in brackets: the verdict's (over seeds and test "
        "examples) on the rows it covers, else a t-interval over seeds; one seed: its bootstrap over test "
        "examples; hover a number for its source. ≈ chance: the score is above chance by less than 10% of the headroom, so its D is not "
        "meaningful. Verdict: D dense − D global per architecture and ablation (★ the study's headline); "
        "differs: the config keys in which the runs differ.</p></footer>")
    parts.append(f"<script>{JS}</script></body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------- LaTeX
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex(text: object) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def render_latex(rows: list[dict], ablations: list[str]) -> str:
    """A booktabs table: one block per task (heading row with its metric and chance), a row per model."""
    show_differs = any(r["differs"] for r in rows)
    cols = ["Run", "Architecture", "Params", "Variant", "Score", *labels(rows, ablations)]
    cols += ["Differs"] if show_differs else []
    spec = "llrlr" + "r" * len(ablations) + ("l" if show_differs else "")
    lines = ["% bench leaderboard; needs \\usepackage{booktabs}", r"\begin{table}[t]", r"\centering", r"\small",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(tex(c) for c in cols) + r" \\"]
    for task_rows in groups(rows):
        first = task_rows[0]
        aliases = ", ".join(dict.fromkeys(r["task"] for r in task_rows))
        lines += [r"\midrule", rf"\multicolumn{{{len(cols)}}}{{l}}{{\textit{{{tex(aliases)}}}: "
                  rf"\texttt{{{tex(first['task_spec'])}}} --- {tex(first['metric'])}, chance "
                  rf"{fmt(chance_of(task_rows))}}} \\", r"\addlinespace"]
        for r in task_rows:
            mean, sd, n = r["value"]
            score = "---" if mean is None else f"${mean:.3f} \\pm {sd:.3f}$" if n > 1 else f"${mean:.3f}$"
            if r["near_chance"]:
                score += r"$^\dagger$"
            ds = []
            for a in ablations:
                m = d_of(r, a)[0]
                ci = r["intervals"].get(a)
                m = ci[2] if ci and ci[2] is not None else m
                ds.append("---" if m is None else f"${m:.3f}$" + (
                    rf" {{\scriptsize[{ci[0][0]:.3f}, {ci[0][1]:.3f}]}}" if ci else ""))
            variant = r["variant"] if r["variant"] == "baseline" else rf"\quad {tex(r['variant'])}"
            cells = [tex(r["study"]), rf"{tex(r['architecture'])} {{\scriptsize\texttt{{{tex(r['arch_spec'])}}}}}",
                     params_text(r["n_params"]), variant if r["variant"] != "baseline" else "baseline", score, *ds]
            cells += [rf"{{\scriptsize {tex(differs_text(r['differs']))}}}"] if show_differs else []
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{Identity dependence D (share of the above-chance score lost when identity paths are "
              rf"ablated; S: sufficiency). Score: mean $\pm$ sd over seeds; D: mean over seeds with a 95\% "
              rf"bootstrap interval where computed. $^\dagger$: within 10\% of the headroom above chance, D not "
              rf"meaningful. {tex(MERGE.capitalize())}.}}", r"\end{table}", ""]
    return "\n".join(lines)
