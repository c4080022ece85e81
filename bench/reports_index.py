"""The committed-results index: the table in reports/README.md, re-derived from reports/*/results.json.

``python -m bench reports`` (``refresh`` here) rewrites the table between the
markers; tests/bench/test_reports_index.py fails when the committed table differs from the regenerated
one, so a stale table cannot land. Columns: the verdict per study (its first pair's headline row), device with
its CPU model, the wall time of every invocation on the folder and the cells' compute; then every verdict pair's
headline and interaction with its interval's level, the seeds it rests on and where the study stopped (a study with
several pairs shows them all: the answer is read from this table); the sizing of each headline; then per task ×
architecture × variant the metric and the D of every ablation any committed study measured (S where it declares a
sufficiency), as in ``bench leaderboard``.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError
from bench.io import write_text
from bench.leaderboard_table import _cell, d_of, labels, rows_of
from bench.markdown import esc, fmt, link_target
from bench.power import MAX_SEEDS, plan_rows, why_no_plan
from bench.report import call_level, fmt_ci, table
from bench.results import Decision, Results, load_results

START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
EMPTY_STATE = "No committed studies yet."


def device_of(provenance: dict) -> str:
    """Device and CPU model: CPU results agree across machines only within docs/reproducibility.md's tolerance."""
    cpu = provenance.get("cpu") or "CPU model not recorded"
    return f"{provenance.get('device_name', '?')}; {cpu}"


def wall(seconds: float | None) -> str:
    """h:mm:ss of the invocations' summed wall time (``invocations``; ``timings.study`` for older results)."""
    if seconds is None:
        return "—"
    h, rest = divmod(round(seconds), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def study_link(run: Path) -> str:
    """``[name](name/report.md)``: the folder's name as text, its path percent-encoded (a relative link)."""
    return f"[{esc(run.name)}]({link_target(run.name)}/report.md)"


def render_table(reports: Path) -> str:
    runs = sorted(p.parent for p in Path(reports).glob("*/results.json"))
    if not runs:
        return EMPTY_STATE
    studies, columns, verdicts = [], [], []
    for run in runs:
        res = load_results(run)
        rows, ablations = rows_of(res)
        studies.append((run, rows))
        columns += [a for a in ablations if a not in columns and any(d_of(r, a)[0] is not None for r in rows)]
        v = res.verdict.headline if res.verdict else None
        verdict = (f"**{v.verdict}** ({esc(v.architecture)}, {esc(v.ablation)}: dense − global = "
                   f"{fmt_ci(v.difference)})" if v else "no verdict requested" if res.verdict is None
                   else f"no verdict ({esc(res.verdict.headline_missing)})")
        total = sum(i.study_s for i in res.invocations) if res.invocations else res.timings.get("study")
        verdicts.append([study_link(run), verdict, esc(device_of(res.provenance)), wall(total),
                         f"{res.timings.get('cells', res.timings.get('study', 0)):.0f} s"])
    body = [[study_link(run), *(esc(r[k]) for k in ("task", "architecture", "variant", "metric")),
             _cell(r["value"]), _cell(r["chance"]), *(_cell(d_of(r, c)) for c in columns)]
            for run, rows in studies for r in rows]
    return (table(["study", "verdict (first pair)", "device; CPU", "wall time (all invocations)",
                   "compute (all cells)"], verdicts) + "\n\n"
            + headlines_table(runs) + "\n\n"
            + sizing_table(runs) + "\n\n"
            + table(["study", "task", "architecture", "variant", "metric", "value (mean ± sd, n seeds)", "chance",
                     *(esc(label) for label in labels([r for _, rows in studies for r in rows], columns))], body))


def stopped_at(res: Results) -> str:
    """Where a study in seed rounds stopped and why (its look of the planned ones), or that its seeds were fixed."""
    seq = res.sequential
    if seq is None:
        return "fixed seeds"
    look = seq.planned_looks.index(seq.stopped_at) + 1 if seq.stopped_at in seq.planned_looks else "?"
    return f"look {look} of {len(seq.planned_looks)}: {seq.reason}"


def level_of(difference: Decision | None, alpha: float) -> str:
    """The interval's coverage, 1 − the level it was tested at; none without an interval (below 6 seeds)."""
    return "—" if difference is None or difference.low is None else f"{100 * (1 - alpha):.1f}%"


def headlines_table(runs: list[Path]) -> str:
    """Every verdict pair's headline and every interaction of every study: the call, the median difference with
    its interval and that interval's level (Pocock's per look for a study in seed rounds), the seeds it rests on
    of those the study ran (the rest excluded by the blind rule or missing), and where the study stopped."""
    body = []
    for run in runs:
        res = load_results(run)
        seq = res.sequential
        ran = seq.stopped_at if seq else len(res.config["seeds"])
        alpha = call_level(res)
        for v in res.all_verdicts():
            h = v.headline
            body.append([study_link(run), esc(v.label or v.dense_task),
                         f"**{h.verdict}**" if h else f"no headline ({esc(v.headline_missing)})",
                         fmt_ci(h.difference) if h else "—", level_of(h.difference if h else None, alpha),
                         f"{h.seeds} of {ran}" if h else "—",
                         esc(stopped_at(res))])
        for i in [res.interaction] if res.interaction else res.interactions:
            body.append([study_link(run), esc(f"{i.second} − {i.first}"), f"**{i.call}**", fmt_ci(i.difference),
                         level_of(i.difference, alpha), f"{i.seeds} of {ran}", esc(stopped_at(res))])
    return ("Every headline (each verdict pair, and the interaction of two pairs; dense − global is the median over "
            "seeds of D_dense − D_global, docs/protocols.md):\n\n"
            + table(["study", "pair", "call", "dense − global [interval]", "level", "seeds used", "stopped"], body))


def sizing_table(runs: list[Path]) -> str:
    """Each study's headline, sized (``bench power``: its report has every row): the seeds it has, the noise
    behind its interval, and the seeds a decision would take."""
    body = []
    for run in runs:
        res = load_results(run)
        rows = [r for r in plan_rows(res) if r["role"] == "headline"]
        if not rows:
            body.append([study_link(run), *["—"] * 8, esc(why_no_plan(res) or "no headline row")])
        for r in rows:
            body.append([study_link(run), esc(r["pair"]), r["seeds"], fmt(r["median"]), fmt(r["seed_sd"]),
                         fmt(r["test_sd"]), fmt(r["floor"]),
                         r["seeds_for_halfwidth"] or ("below the floor" if r["test_set_factor"] else f"> {MAX_SEEDS}"),
                         r["seeds_for_power"] or f"> {MAX_SEEDS}", ""])
    return ("Sizing the headlines (`python -m bench power <study>`; docs/protocols.md, \"Sizing\"): seeds for a "
            "half-width of ±0.1, and for 80% power at the observed |median|.\n\n"
            + table(["study", "pair", "seeds", "median", "seed SD", "test SD", "floor", "seeds for ±0.1",
                     "seeds for 80% power", "note"], body))


def update(readme: Path) -> bool:
    """Rewrite the table in ``readme``; True if it changed."""
    readme = Path(readme)
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise BenchError(f"{readme}: needs one '{START}' line followed by one '{END}' line; add them where "
                         "the table goes")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{render_table(readme.parent)}\n{END}{tail}"
    if new != text:
        write_text(readme, new)
    return new != text


def refresh(reports: Path) -> str:
    """``bench reports``: rewrite the table in ``reports``/README.md; the line to print (updated or not).

    A missing README is a BenchError; an OSError while writing it propagates (the CLI names the file).
    """
    readme = Path(reports) / "README.md"
    if not readme.is_file():
        raise BenchError(f"{readme}: not found; run from the repository root or pass --dir")
    return f"{readme}: {'updated' if update(readme) else 'already up to date'}"


def committed_table(readme: Path) -> str:
    return Path(readme).read_text().partition(START)[2].partition(END)[0].strip()
