"""The ablation sections of report.md: one renderer per ablation CLASS, owned by the reporting layer.

The ablations (``bench/ablations/``) say what they measure and compute it; how their results are drawn
is decided here, from results.json alone. A renderer is ``(results, run folder, name) -> markdown``,
where ``name`` is the name the config registered the ablation under (its key in each cell's
``ablations`` and the stem of its figure); it is found by the ablation's class, walking its bases
(``renderer_for``), never by name. An ablation with no renderer of its own — a plugin's, or
``skip_removal``, whose comparisons have a section of their own in report.py — gets ``default_section``:
a table of each cell's summary. A plugin may register one for its class with ``@renders(MyAblation)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from bench import plots
from bench.ablations.effective_depth import EffectiveDepthTraining
from bench.ablations.identity_readout import IdentityReadout
from bench.ablations.lesion import BlockLesion
from bench.ablations.multi_lesion import MultiLesion
from bench.ablations.path_gradients import PathGradients
from bench.ablations.reorder import Reorder
from bench.ablations.skip_lesion import SkipLesion
from bench.ablations.skip_scale import SkipScale
from bench.markdown import esc, fmt, fmt_ci, image, table
from bench.metrics import mean_of, scale_of
from bench.results import Results
from bench.rundir import RunDir

Renderer = Callable[[Results, Path, str], str]
RENDERERS: dict[type, Renderer] = {}


def renders(cls: type) -> Callable[[Renderer], Renderer]:
    """Register the decorated function as the report section of ablation class ``cls`` (and its subclasses
    that have none of their own)."""

    def deco(fn: Renderer) -> Renderer:
        RENDERERS[cls] = fn
        return fn

    return deco


def own_renderer(cls: type) -> Renderer | None:
    return next((RENDERERS[k] for k in cls.__mro__ if k in RENDERERS), None)


def has_own_section(cls: type) -> bool:
    """The ablation's class (or a base) has a renderer: report.py leaves its comparisons to it."""
    return own_renderer(cls) is not None


def renderer_for(cls: type) -> Renderer:
    """The class's renderer, or the default table captioned with the first line of its docstring."""
    doc = (cls.__doc__ or "").strip().splitlines()
    return own_renderer(cls) or partial(default_section, doc=doc[0] if doc else "")


def default_section(res: Results, run_dir: Path, name: str, doc: str = "") -> str:
    """A table of each cell's summary dependence and the summary's other fields."""
    rows = []
    for c in res.cells:
        out = c.ablations.get(name)
        if out is None:
            continue
        rows.append([esc(c.task), esc(c.architecture), c.seed, len(out.records), fmt_ci(out.summary_ci),
                     *(fmt(v) if isinstance(v, float) else esc(v) for k, v in out.summary.items()
                       if k != "dependence")])
    if not rows:
        return ""
    extra = [k for k in next(c.ablations[name].summary for c in res.cells if name in c.ablations) if k != "dependence"]
    return f"## {esc(name)}\n\n{esc(doc)}\n\n" + table(
        ["task", "architecture", "seed", "settings", "D [95% CI]", *map(esc, extra)], rows) + "\n"


# ------------------------------------------------------------------------------ shared by the figures
def grid_section(res: Results, run_dir: Path, name: str, *, title: str, intro: str, header: list[str], panel,
                 per: Literal["pair", "task"] = "pair", share: Literal["all", "row", "none"] = "all",
                 height: float = 2.6) -> str:
    """The one section builder of the figure ablations: a panel per (task, architecture) pair — one row per
    task, one column per architecture — or per task (one row each, every architecture in it), drawn by
    ``panel(ax, *group)``, which returns its table rows, each starting with its task and architecture
    (escaped here: user-chosen names); then the figure and the table under ``title``, whose ablation name
    the caller escapes. ``share``: which panels' y-axes are one scale (``plots.panels``)."""
    groups = pair_groups(res, name)
    if not groups:
        return ""
    tasks = sorted({t for t, _, _ in groups})
    if per == "pair":
        archs = sorted({a for _, a, _ in groups})
        fig, axes = plots.panels(tasks, archs, share=share, height=height)
        drawn = [(axes[t, a], (t, a, g)) for t, a, g in groups]
        for key in set(axes) - {(t, a) for t, a, _ in groups}:  # a pair the study did not run: an empty slot
            axes[key].axis("off")
    else:
        fig, axes = plots.panels(tasks, share=share, width=4.6, height=height)
        drawn = [(axes[task, ""], (task, archs)) for task, archs in by_task(groups)]
    rows = [[esc(task), esc(arch), *rest] for ax, group in drawn for task, arch, *rest in panel(ax, *group)]
    png = plots.save(fig, RunDir(run_dir).figure(name))
    return f"## {title}\n\n{intro}\n\n{image(name, png)}\n\n" + table(header, rows) + "\n"


def margin_threshold(res: Results) -> float:
    """The conditioning threshold: a baseline's margin over chance below it makes D unreliable (the verdict's
    ``min_margin``; 0.1, its default, for a study without a verdict)."""
    if res.verdict is not None and res.verdict.rows:
        return res.verdict.rows[0].conditioning.threshold
    spec = res.config.get("verdict")
    spec = spec[0] if isinstance(spec, list) and spec else spec
    return float(spec.get("min_margin", 0.1)) if isinstance(spec, dict) else 0.1


def model_state(res: Results, cells: list) -> str | None:
    """How a model's D reads, from its seeds' margin over chance on the study's scale (mean over seeds):
    'at or below chance' (margin <= 0: D is undefined or meaningless), 'ill-conditioned' (below the
    conditioning threshold), or None (D reads as it should)."""
    sc = scale_of(res.scale)
    margins = [c.metrics[sc.metric] - c.chance[sc.chance] for c in cells
               if c.metrics.get(sc.metric) is not None and c.chance.get(sc.chance) is not None]
    if not margins:
        return None
    m = float(np.mean(margins))
    return "at or below chance" if m <= 0 else "ill-conditioned" if m < margin_threshold(res) else None


def mark_model(ax, res: Results, group: list, title: str) -> str | None:
    """Title the panel: a model whose D does not read as the others' has its state in the title, in red (its
    bars or lines are hatched or dotted by the caller, the state named in its legend: ``plots.STATES``)."""
    state = model_state(res, group)
    ax.set_title(title + (f" [{state}]" if state else ""), fontsize=9, color="firebrick" if state else "black")
    return state


def pair_groups(res: Results, name: str) -> list[tuple[str, str, list]]:
    """(task, architecture, its cells over seeds) for each pair whose cells ran ablation ``name``, sorted:
    what every section plots and tabulates."""
    cells = [c for c in res.cells if name in c.ablations]
    pairs = sorted({(c.task, c.architecture) for c in cells})
    return [(t, a, [c for c in cells if (c.task, c.architecture) == (t, a)]) for t, a in pairs]


def by_task(groups: list[tuple[str, str, list]]) -> list[tuple[str, list[tuple[str, list]]]]:
    """``pair_groups`` regrouped for one panel per task: (task, [(architecture, cells), ...]), sorted."""
    return [(task, [(a, g) for t, a, g in groups if t == task]) for task in sorted({t for t, _, _ in groups})]


def binned_mean(x: np.ndarray, y: np.ndarray, bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Mean of y in equal-width bins of x (empty bins left out): the trend line over a scatter."""
    edges = np.linspace(x.min(), x.max(), bins + 1) if x.max() > x.min() else np.array([x.min(), x.min() + 1])
    idx = np.clip(np.digitize(x, edges[1:-1]), 0, len(edges) - 2)
    used = np.unique(idx)
    return (np.array([x[idx == i].mean() for i in used]), np.array([y[idx == i].mean() for i in used]))


def mean_error(cells: list, of: str = "metrics") -> float:
    """Mean error, 1 − primary metric, over cells: of the trained models, or of chance (``of="chance"``)."""
    return float(np.mean([1 - getattr(c, of)[c.primary_metric] for c in cells]))


# ------------------------------------------------------------------------------ the built-ins
KIND_COLOURS = {"attention": "tab:orange", "mlp": "tab:green"}  # declared branch kinds (a ViT's); others: blue


def single_lesions(cell, name: str) -> list[dict]:
    """A cell's one-branch lesion records: the first ``summary.blocks`` (whole-unit lesions, a transformer
    block's branches at once, follow them; bench.ablations.lesion)."""
    result = cell.ablations[name]
    return result.records[: result.summary.get("blocks", len(result.records))]


@renders(BlockLesion)
def block_lesion(res: Results, run_dir: Path, name: str) -> str:
    def panel(ax, task: str, arch: str, group: list) -> list[list]:
        recs = single_lesions(group[0], name)
        err = np.array([[1 - r["primary"] for r in single_lesions(c, name)] for c in group])
        base, chance = mean_error(group), mean_error(group, "chance")
        colours = ["tab:red" if r["key"]["downsampling"] else KIND_COLOURS.get(r["key"].get("branch"), "tab:blue")
                   for r in recs]
        x = np.arange(1, len(recs) + 1)
        hatch = plots.STATES[model_state(res, group)][1] if model_state(res, group) else None
        ax.bar(x, err.mean(0), yerr=err.std(0, ddof=1) if len(group) > 1 else None, color=colours, capsize=2,
               hatch=hatch, edgecolor="white" if hatch else None)
        ax.axhline(base, color="k", ls="--", lw=1, label="intact")
        ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        plots.points(ax, x, err.mean(0))
        plots.extent(ax, err.mean(0) + err.std(0), err.mean(0) - err.std(0))
        plots.anchor(ax, base, chance)
        plots.integer_ticks(ax)
        state = mark_model(ax, res, group, f"{arch} on {task}")
        kinds = sorted({r["key"].get("branch") for r in recs} & set(KIND_COLOURS))
        ax.set_xlabel("lesioned block (red: downsampling" + "".join(f"; {KIND_COLOURS[k][4:]}: {k}" for k in kinds)
                      + ")", fontsize=8)
        ax.set_ylabel(f"error (1 − {group[0].primary_metric})", fontsize=8)
        plots.legend_outside(ax, plots.state_handles([state]))
        deps = [c.ablations[name].summary for c in group]
        down = np.array([bool(r["key"]["downsampling"]) for r in recs])
        by_kind = [fmt(float(err[:, sel].mean())) if sel.any() else "—" for sel in (down, ~down)]
        return [[task, arch, len(group), len(recs), fmt(base), fmt(float(err.mean())), *by_kind,
                 fmt(float(err.max())), fmt(mean_of([d["dependence"] for d in deps])),
                 fmt(mean_of([d["dependence_non_downsampling"] for d in deps]))]]

    text = grid_section(
        res, run_dir, name, title=f"{esc(name)} — single-block lesions (Veit et al. 2016, Fig. 3)",
        intro="Each block's residual branch removed at test time, its shortcut kept (plain layers: y = x). "
              "Bars: mean error over seeds, error bars: sd over seeds. BatchNorm: running statistics kept, as "
              "in the paper. D on the study's scale (the verdict names it; mean over seeds).",
        header=["task", "architecture", "seeds", "blocks", "error, intact", "mean error, one block lesioned",
                "mean error, downsampling blocks", "mean error, other blocks", "worst", "mean D", "mean D, non-downsampling"],
        panel=panel, share="row")
    return text + by_branch_table(res, name) if text else text


def by_branch_table(res: Results, name: str) -> str:
    """D per declared branch kind (a ViT's attention and MLP branches, and its blocks lesioned whole), per task
    and architecture: mean over seeds, its sd and range; nothing for architectures that declare no kinds."""
    rows = []
    for task, arch, group in pair_groups(res, name):
        per_seed: dict[str, list[float | None]] = {}
        for c in group:
            for kind, d in (c.ablations[name].summary.get("dependence_by_branch") or {}).items():
                per_seed.setdefault(kind, []).append(d)
        for kind, ds in sorted(per_seed.items(), key=lambda kv: (len(kv[0].split("+")), kv[0])):
            v = np.asarray([d for d in ds if d is not None], dtype=float)
            spread = [fmt(float(v.std(ddof=1))) if len(v) > 1 else "—",
                      f"{fmt(float(v.min()))} – {fmt(float(v.max()))}" if len(v) else "—"]
            rows.append([esc(task), esc(arch), esc(kind), f"{len(v)} of {len(ds)}",
                         fmt(float(v.mean())) if len(v) else "—", *spread])
    if not rows:
        return ""
    return ("\nD per branch kind: each kind's lesions of one branch (attention, mlp), and each unit lesioned "
            "whole (attention+mlp: a transformer block, y = x over it); per seed the mean over that kind's "
            "lesions, then over seeds with a D (none where the baseline is at or below chance). The "
            "dense-vs-global reading with intervals is the verdict's ensemble row (single-branch lesions).\n\n"
            + table(["task", "architecture", "lesioned", "seeds with a D", "mean D", "sd over seeds", "range over seeds"], rows)
            + "\n")


@renders(MultiLesion)
def multi_lesion(res: Results, run_dir: Path, name: str) -> str:
    def panel(ax, task: str, archs: list) -> list[list]:
        rows, states = [], []
        for arch, group in archs:
            summ = [c.ablations[name].summary for c in group]
            ks = sorted(int(k) for k in summ[0]["error_by_k"] if k != "0")
            err = np.array([[s["error_by_k"][str(k)] for k in ks] for s in summ])  # (seeds, k)
            base = mean_error(group)
            mean = err.mean(0)
            spread = err.std(0, ddof=1) if len(group) > 1 else np.zeros_like(mean)
            state = model_state(res, group)
            states.append(state)
            line = ax.errorbar([0, *ks], [base, *mean], yerr=[0, *spread], marker=plots.MARKERS.get(state, "o"),
                               ms=4 if state else 3, capsize=2, ls=":" if state else "-",
                               label=f"{arch} [{state}]" if state else arch)[0]
            ax.axhline(base, color=line.get_color(), ls="--", lw=0.8)  # intact
            plots.points(ax, [0, *ks], [base, *mean])
            plots.extent(ax, mean + spread, mean - spread)
            rows.append([task, arch, len(group), fmt(base), *(fmt(float(mean[ks.index(k)])) if k in ks else "—"
                                                          for k in (1, 2, ks[-1]))])
        chance = mean_error([c for _, group in archs for c in group], "chance")
        ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        plots.anchor(ax, chance)
        plots.integer_ticks(ax)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("blocks deleted (k)", fontsize=8)
        ax.set_ylabel("error (mean ± sd over seeds;\ndashed: intact)", fontsize=8)
        plots.legend_outside(ax, plots.state_handles(states))
        return rows

    policy = next((a.get("bn_policy", "running") for a in res.config.get("ablations", []) if a["name"] == name),
                  "running")
    return grid_section(
        res, run_dir, name, title=f"{esc(name)} — deleting k blocks (Veit et al. 2016, Fig. 5a)",
        intro="k lesionable blocks chosen at random (distinct sets) and deleted together (residual branch "
              f"removed, shortcut kept); each seed's mean over its samples, then mean ± sd over seeds. BatchNorm "
              f"statistics: {policy}.",
        header=["task", "architecture", "seeds", "error k=0", "k=1", "k=2", "k=max"], panel=panel, per="task",
        share="none")


@renders(Reorder)
def reorder(res: Results, run_dir: Path, name: str) -> str:
    def panel(ax, task: str, archs: list) -> list[list]:
        rows = []
        for arch, group in archs:
            recs = [r for c in group for r in c.ablations[name].records]
            tau = np.array([r["key"]["kendall_tau"] for r in recs])
            err = np.array([1 - r["primary"] for r in recs])
            dots = ax.scatter(tau, err, s=10, alpha=0.4, label=arch, rasterized=True)  # many dots: pixels in PDF/SVG
            centre, mean = binned_mean(tau, err)
            ax.plot(centre, mean, color=dots.get_facecolor()[0][:3], lw=1.5)
            plots.points(ax, tau, err)
            summ = [c.ablations[name].summary for c in group]
            corr = [x["corr_tau_error"] for x in summ if x["corr_tau_error"] is not None]
            why = next((x.get("corr_note") for x in summ if x.get("corr_note")), None)
            rows.append([task, arch, len(group), len(recs), len(np.unique(tau)), fmt(float(tau.min())),
                         fmt(mean_error(group)), fmt(float(err.mean())),
                         fmt(float(np.mean(corr))) if corr else f"— ({why})" if why else "—"])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("Kendall tau (1 = original order)", fontsize=8)
        ax.set_ylabel("error", fontsize=8)
        ax.invert_xaxis()
        ax.legend(fontsize=7)
        return rows

    return grid_section(
        res, run_dir, name, title=f"{esc(name)} — error vs Kendall tau (Veit et al. 2016, Fig. 5b)",
        intro="Random pairs of exchangeable residual blocks (same stage, identity shortcut) swapped at test "
              "time, distinct orders only; dots: one reordering each (all seeds), line: mean error per tau bin. "
              "The correlation needs at least 3 distinct tau values.",
        header=["task", "architecture", "seeds", "reorderings", "distinct tau", "lowest tau", "error, original",
                "mean error, reordered", "corr(tau, error), mean over seeds"], panel=panel, per="task",
        share="none")


@renders(PathGradients)
def path_gradients(res: Results, run_dir: Path, name: str) -> str:
    def panel(ax, task: str, arch: str, group: list) -> list[list]:
        recs = group[0].ablations[name].records
        ks = [r["key"]["k"] for r in recs]
        mag = np.array([[r["grad_norm_mean"] for r in c.ablations[name].records] for c in group])
        tot = np.mean([[r["total_gradient"] for r in c.ablations[name].records] for c in group], 0)
        ax.errorbar(ks, mag.mean(0), yerr=mag.std(0, ddof=1) if len(group) > 1 else None, fmt="o-", ms=3,
                    capsize=2, label="gradient norm at k")
        ax.set_yscale("log")
        plots.integer_ticks(ax)
        ax.set_xlabel("path length k", fontsize=8)
        ax.set_ylabel("gradient norm (log; mean ± sd over seeds)", fontsize=8)
        twin = ax.twinx()
        twin.plot(ks, [r["path_share"] for r in recs], "--", color="grey", label="share of paths")
        twin.plot(ks, tot, "-", color="tab:red", label="share of total gradient")
        twin.set_ylabel("share", fontsize=8)
        mark_model(ax, res, group, f"{arch} on {task}")
        s = [c.ablations[name].summary for c in group]
        twin.axvspan(s[0]["window_low"], s[0]["window_high"], color="tab:red", alpha=0.08, label="effective window")
        twin.legend(fontsize=7, loc="upper right")
        return [[task, arch, len(group), s[0]["n_blocks"], "; ".join(f"{x['window_low']}–{x['window_high']}" for x in s),
                 fmt(float(np.mean([x["window_path_share"] for x in s]))),
                 fmt(float(np.mean([x["mean_gradient_path_length"] for x in s])), 2), fmt(s[0]["mean_path_length"], 1)]]

    groups = pair_groups(res, name)
    mass = groups[0][2][0].ablations[name].summary["window_mass"] if groups else 0.9
    return grid_section(
        res, run_dir, name, title=f"{esc(name)} — gradient by path length (Veit et al. 2016, Fig. 6)",
        intro=f"Total gradient at length k = share of paths C(n,k)/2^n x mean gradient norm at k. Effective window: "
              f"the central path lengths carrying {mass:.0%} of it ({(1 - mass) / 2:.0%} cut from each tail; Veit et "
              "al.: 5–17 of 54 blocks, 0.45% of the paths). U-Nets are not applicable (long skips are parallel "
              "paths).",
        header=["task", "architecture", "seeds", "blocks n", "effective window (per seed)", "share of paths in window",
                "mean length of gradient", "mean path length"], panel=panel, share="none", height=3.0)


def error_bar_handle(label: str):
    """A legend entry saying what a figure's error bars are."""
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color="black", marker="|", ms=9, lw=0, mew=1.2, label=label)


@renders(SkipLesion)
def skip_lesion(res: Results, run_dir: Path, name: str) -> str:
    def panel(ax, task: str, arch: str, group: list) -> list[list]:
        recs = group[0].ablations[name].records
        keys = [(r["key"]["fill"], str(r["key"]["level"])) for r in recs]
        dep = np.array([[r["dependence"] if r["dependence"] is not None else np.nan
                         for r in c.ablations[name].records] for c in group])
        means = {k: mean_of(dep[:, i]) for i, k in enumerate(keys)}  # None where every seed was undefined
        sds = {k: float(np.nanstd(dep[:, i], ddof=1)) if np.isfinite(dep[:, i]).sum() > 1 else 0.0
               for i, k in enumerate(keys)}
        fills = [f for f in ("mean", "zero", "shuffle") if any(k[0] == f for k in keys)]
        levels = sorted({k[1] for k in keys if k[1] != "all"}, key=_level_order) + ["all"]  # finest first
        width = 0.8 / len(fills)
        state = model_state(res, group)
        for j, fill in enumerate(fills):
            vals = np.array([np.nan if means.get((fill, lv)) is None else means[fill, lv] for lv in levels])
            sd = np.array([sds.get((fill, lv), 0.0) for lv in levels])
            x = np.arange(len(levels)) + j * width
            ax.bar(x, vals, width, label=f"{fill} fill: mean over seeds", yerr=sd if len(group) > 1 else None,
                   capsize=2, hatch=plots.STATES[state][1] if state else None,
                   alpha=plots.STATES[state][2] if state else 1.0)
            plots.points(ax, x, vals)
            plots.extent(ax, vals + sd, vals - sd)
        plots.anchor(ax, 0, 1)
        ax.axhline(0, color="grey", lw=0.6)
        ax.axhline(1, color="grey", lw=0.6, ls=":")  # chance
        ax.set_xticks(np.arange(len(levels)) + width * (len(fills) - 1) / 2, levels, fontsize=7)
        mark_model(ax, res, group, f"{arch} on {task}")
        numbered = all(_level_order(lv)[0] == 0 for lv in levels if lv != "all")
        ax.set_xlabel("skip level lesioned (0 = finest)" if numbered else "skip lesioned (as the model names it)",
                      fontsize=8)
        ax.set_ylabel("identity dependence D\n(0 = nothing lost, 1 = chance)", fontsize=8)
        extra = [error_bar_handle(f"error bar: sd over the {len(group)} seeds")] if len(group) > 1 else []
        plots.legend_outside(ax, extra + plots.state_handles([state]))
        return [[task, arch, len(group), fill, ", ".join(f"{lv}: {fmt(means.get((fill, lv)))}" for lv in levels
                                                          if lv != "all"), fmt(means.get((fill, "all")))]
                for fill in fills]

    return grid_section(
        res, run_dir, name, title=f"{esc(name)} — trained skips replaced at test time",
        intro="D per level (0 = finest) and for all levels at once, mean over seeds (error bars: sd); fills: the "
              "calibrated mean activation (the headline: no information about this image, first-order statistics "
              "kept), zeros, another test image's skip (a seeded derangement of the test set). D on the study's "
              "scale: 0 = nothing lost, 1 = chance.",
        header=["task", "architecture", "seeds", "fill", "D per level", "D, all levels"], panel=panel)


@renders(SkipScale)
def skip_scale(res: Results, run_dir: Path, name: str) -> str:
    def panel(ax, task: str, arch: str, group: list) -> list[list]:
        recs = group[0].ablations[name].records
        keys = [(str(r["key"]["level"]), float(r["key"]["beta"])) for r in recs]
        dep = np.array([[r["dependence"] if r["dependence"] is not None else np.nan
                         for r in c.ablations[name].records] for c in group])
        means = {k: mean_of(dep[:, i]) for i, k in enumerate(keys)}
        levels = sorted({lv for lv, _ in keys if lv != "all"}, key=_level_order) + ["all"]
        state = model_state(res, group)
        for lv in levels:
            betas = sorted(b for level, b in keys if level == lv)
            ys = [np.nan if means[lv, b] is None else means[lv, b] for b in betas]
            ax.plot([1 - b for b in betas], ys, marker=plots.MARKERS.get(state, "o"), ms=3,
                    lw=2.0 if lv == "all" else 1.0, ls=":" if state else "-",
                    color="black" if lv == "all" else None, label=f"level {lv}" if lv != "all" else "all levels")
            plots.points(ax, [1 - b for b in betas], ys)
        plots.anchor(ax, 0, 1)
        ax.axhline(0, color="grey", lw=0.6)
        ax.axhline(1, color="grey", lw=0.6, ls=":")  # chance
        mark_model(ax, res, group, f"{arch} on {task}")
        ax.set_xlabel("strength removed, 1 − beta (0 = intact)", fontsize=8)
        ax.set_ylabel("identity dependence D\n(0 = nothing lost, 1 = chance)", fontsize=8)
        plots.legend_outside(ax, plots.state_handles([state]))
        area = mean_of(c.ablations[name].summary["dependence"] for c in group)
        by_level = {lv: mean_of(c.ablations[name].summary["dependence_by_level"].get(lv) for c in group)
                    for lv in levels if lv != "all"}
        curve = ", ".join(f"{b:g}: {fmt(means['all', b])}" for b in sorted((b for lv, b in keys if lv == "all"),
                                                                          reverse=True))
        return [[task, arch, len(group), curve, ", ".join(f"{lv}: {fmt(v)}" for lv, v in by_level.items()),
                 fmt(area)]]

    return grid_section(
        res, run_dir, name, title=f"{esc(name)} — skip strength as a curve (FreeU / Skip-Tuning)",
        intro="The trained skips multiplied by beta at test time, each level alone and all at once; D against the "
              "strength removed, mean over seeds. beta = 0 is the zero fill of skip_lesion, beta = 1 the intact "
              "model. Summary: the area under the all-levels curve over the grid's span (a curve that is D "
              "everywhere has area D). D on the study's scale.",
        header=["task", "architecture", "seeds", "D at beta (all levels)", "area per level", "area, all levels"],
        panel=panel)


def _level_order(level: str) -> tuple[int, str]:
    """Skip levels in one order for every architecture: input skip (-1), then 0 (finest), 1, ...; blocks last."""
    try:
        return (0, f"{int(level):+04d}")
    except ValueError:
        return (1, level)


@renders(IdentityReadout)
def identity_readout(res: Results, run_dir: Path, name: str) -> str:
    cells = [c for c in res.cells if name in c.ablations]
    if not cells:
        return ""
    rows, errors = [], []
    seeds_of: dict[tuple[str, int], tuple[float | None, list[float]]] = {}  # (task, seed) -> (sufficiency, error)
    for task, seed in dict.fromkeys((c.task, c.seed) for c in cells):
        group = [c for c in cells if (c.task, c.seed) == (task, seed)]
        out = group[0].ablations[name]
        relative = ", ".join(f"{esc(c.architecture)}: {fmt(c.ablations[name].summary['sufficiency_relative_to_model'])}"
                             for c in group)
        rows.append([esc(task), esc(group[0].task_kind), seed,
                     f"{esc(out.summary['readout_metric'])} {fmt(out.summary['readout_primary'])}",
                     fmt(group[0].metrics.get(scale_of(res.scale).chance)), fmt_ci(out.summary_ci), relative])
        ci = out.summary_ci
        suff = out.summary["sufficiency"]
        # a percentile interval need not contain the point estimate (chance is re-read in every replicate: 1/K of
        # the classes it holds), and a bar cannot draw a negative error: the table gives the interval as it is
        errors.append([max(suff - ci.low, 0.0), max(ci.high - suff, 0.0)] if ci is not None and ci.low is not None
                      and suff is not None else [0.0, 0.0])
        seeds_of[task, seed] = (suff, errors[-1])
    tasks = list(dict.fromkeys(task for task, _ in seeds_of))  # one row per task, a bar per seed
    most = max(sum(t == task for t, _ in seeds_of) for task in tasks)
    fig, axes = plots.panels(tasks, share="all", width=max(4.6, 0.45 * most + 2), height=2.6)
    at_chance = False
    for task in tasks:
        ax = axes[task, ""]
        points = [seeds_of[t, s] + (s,) for t, s in seeds_of if t == task]
        for i, (suff, err, _seed) in enumerate(points):
            chance = suff is None or suff <= 0  # the readout does no better than chance: no bar to draw
            if chance:
                at_chance = True
                plots.shade(ax, i, "at or below chance", half=0.4)
                ax.plot([i], [0.0], marker=plots.MARKERS["at or below chance"], color="black", ms=7, lw=0)
                plots.points(ax, [i], [0.0])
                continue
            ax.bar([i], [suff], 0.7, yerr=np.array([err]).T, color="tab:green", capsize=3)
            plots.points(ax, [i], [suff])
            plots.extent(ax, suff - err[0], suff + err[1])
        plots.anchor(ax, 0)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.set_xticks(range(len(points)), [f"s{seed}" for _, _, seed in points], fontsize=7)
        ax.set_ylabel("sufficiency\n(0 = chance, 1 = perfect)", fontsize=8)
        ax.set_title(f"linear readout of the input alone on {task}", fontsize=9)
    bottom = axes[tasks[-1], ""]
    plots.legend_outside(bottom, [error_bar_handle("error bar: 95% bootstrap interval (test set)"),
                                  *(plots.state_handles(["at or below chance"],
                                                        {"at or below chance": "X: readout at or below chance"})
                                    if at_chance else [])])
    png = plots.save(fig, RunDir(run_dir).figure(name))
    return (f"## {esc(name)} — how much of the answer the input alone carries\n\n"
            "A linear readout of the input (per pixel for segmentation, of the flattened image for "
            "classification), trained on the training split. Headline: sufficiency = "
            "(m_readout − m_chance)/(1 − m_chance), 95% bootstrap CI over test examples; beside it, relative "
            "to each trained model: (m_readout − m_chance)/(m_full − m_chance).\n\n"
            f"{image('identity readout', png)}\n\n"
            + table(["task", "kind", "seed", "readout task metric", "chance (the study's scale)", "sufficiency [95% CI]",
                     "relative to the trained model"], rows) + "\n")


@renders(EffectiveDepthTraining)
def effective_depth_training(res: Results, run_dir: Path, name: str) -> str:
    comps = [c for c in res.comparisons if c.ablation == name]
    if not comps:
        return ""
    groups = sorted({(c.task, c.architecture, c.variant) for c in comps})
    rows, full_err, eff_err = [], [], []
    for task, arch, variant in groups:
        cs = [c for c in comps if (c.task, c.architecture, c.variant) == (task, arch, variant)]
        full = np.array([1 - c.primary_full for c in cs])
        eff = np.array([1 - c.primary_ablated for c in cs])
        full_err.append(full.mean())
        eff_err.append(eff.mean())
        rows.append([esc(task), esc(arch), esc(variant), len(cs), fmt(float(full.mean())), fmt(float(eff.mean())),
                     fmt(float((eff - full).mean()))])
    fig, (ax,) = plots.grid(1, width=max(4.2, 1.2 * len(groups)))
    x = np.arange(len(groups))
    ax.bar(x - 0.2, full_err, 0.4, label="normal training")
    ax.bar(x + 0.2, eff_err, 0.4, label="m of n blocks per batch")
    ax.set_xticks(x, [f"{a}\n{t}\n{v}" for t, a, v in groups], fontsize=7)
    ax.set_ylabel("test error (full network)", fontsize=8)
    ax.legend(fontsize=7)
    png = plots.save(fig, RunDir(run_dir).figure(name))
    return (f"## {esc(name)} — training on short paths only (Veit et al. 2016, Sec. 5)\n\n"
            "Each training batch keeps exactly m of the n residual branches (variant keep_m_of_n), the rest "
            "pass their shortcut alone; the full network is tested, unscaled. Veit et al.: 23 of 54 blocks, "
            "5.96% vs 6.10% error on CIFAR-10.\n\n"
            f"{image('effective depth', png)}\n\n" + table(
                ["task", "architecture", "variant", "seeds", "error, normal training", "error, m of n",
                 "Δ error (mean over seeds)"], rows) + "\n")
