"""report.md from results.json: the verdict first, then the evidence, then one section per ablation.

Every number printed here is read from results.json; nothing is recomputed from models.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from bench import plots, sections, stats
from bench.io import write_text
from bench.layout import CONFIG
from bench.markdown import confidence, esc, fmt, fmt_ci, table
from bench.metrics import scale_of
from bench.power import MAX_SEEDS, plan_rows, why_no_plan  # also imported from here by the other text outputs
from bench.registry import ABLATIONS
from bench.results import INTERACTION_CALL, Invocation, Results, Verdict
from bench.rundir import RunDir

WHAT_WOULD_CHANGE = {
    "supported": "it becomes *inconclusive* if the interval of the difference comes to include 0 and "
                 "*contradicted* if the whole interval falls below 0.",
    "contradicted": "it becomes *inconclusive* if the interval of the difference comes to include 0 and "
                    "*supported* if the whole interval rises above 0.",
    "inconclusive": "it is *supported* if the whole interval of the difference rises above 0, *contradicted* if "
                    "it falls below 0; more seeds or a larger test set narrow it.",
    "underpowered": "run at least `min_seeds` seeds (`seeds:` in the config; re-running with more seeds into the same "
                    "folder trains only the new ones); with fewer the rule makes no call. The sizing table below says "
                    "how many this row needs.",
    "ill-conditioned": "train the baselines until their margin over chance clears the threshold (longer training, "
                       "more data): D divides by that margin.",
}
FAMILY_TITLES = {
    "identity": ("Identity family — decides the claim",
                 "Ablations that remove the identity path. The headline row was named in the config before the run; "
                 "every other row is exploratory, its p adjusted with Holm's method over the family."),
    "ensemble": ("Ensemble family — how ensemble-like is the network (Veit et al.)",
                 "Branch lesions, multi-lesion and reordering remove or move residual *branches* and keep the identity. "
                 "They show whether the dense or the global model loses more without some of its branches; they are "
                 "never counted for or against the claim. Holm-adjusted within the family."),
    "sufficiency": ("Sufficiency — how much of the answer the input alone carries",
                    "A linear readout of the input (no model); sufficiency = (m_readout − chance)/(1 − chance)."),
}


def fmt_p(p: float | None) -> str:
    return "—" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def level(alpha: float) -> str:
    """The interval's level as the report writes it: 95%, or 98.7% for a sequential look."""
    return f"{confidence(alpha)}%"


def per_seed(d) -> str:
    return ", ".join(f"s{k}: {fmt(v)}" for k, v in d.per_seed.items()) or "—"


def verdict_section(res: Results) -> str:
    v = res.verdict
    if v is None:
        return "## Verdict\n\nNo `verdict:` block in the config: no dense-vs-global comparison was requested.\n"
    out = ["## Verdict"]
    h = v.headline
    if h is None:
        out.append(f"**no verdict** — {esc(v.headline_missing)}.")
    else:
        out.append(
            f"**{h.verdict}** — claim: *dense prediction depends on the identity path more than global prediction*. "
            f"Pre-specified headline: `{esc(h.ablation)}` on `{esc(h.architecture)}`. Identity dependence D ("
            f"{scale_of(res.scale).label}, median over seeds) of the dense task `{esc(v.dense_task)}` is {fmt_ci(h.dense)} vs "
            f"{fmt_ci(h.global_)} for the global task `{esc(v.global_task)}`; difference {fmt_ci(h.difference)} "
            + (f"({level(v.alpha)} interval, {h.seeds} seeds, p = {fmt_p(h.difference.p)}"
               + (", at this look" if res.sequential is not None else "") + ")." if h.difference.low is not None
               else f"({h.seeds} seeds: no distribution-free interval below 6; see the sizing table)."))
        out.append(f"\nPer seed, D_dense − D_global: {per_seed(h.difference)}.")
        if h.excluded_seeds:
            out.append("\nExcluded before any D was read (the config's blind rule, `max_train_loss`): "
                       + "; ".join(f"s{esc(k)}: {esc(why)}" for k, why in h.excluded_seeds.items()) + ".")
        out.append(f"\nConditioning: {esc(h.conditioning.note)}.")
        if v.sensitivity is not None and not res.verdicts:
            out.append("\n" + sensitivity_line(v))
        if v.localisation is not None and not res.verdicts:
            out.append("\n" + localisation_line(v))
        out.append("\nWhat would change it: " + WHAT_WOULD_CHANGE.get(h.verdict, ""))
    out.append(pairs_section(res))
    if res.sequential is not None:
        out.append("\n" + sequential_line(res.sequential))
    out.append("\n" + preregistration_line(res))
    out.append(f"\nMethod: {v.method}")
    pairs = res.verdicts if len(res.verdicts) > 1 else [v]
    for pair in pairs:  # every pair's rows: the second pair's exploratory rows can point another way
        out.extend(family_tables(pair, (pair.label or pair.dense_task) if len(pairs) > 1 else None))
    out.append(sizing_section(res))
    return "\n".join(out) + "\n"


def sizing_section(res: Results, halfwidth: float = 0.10, effect: float | None = None) -> str:
    """How many seeds each verdict row needs (``bench.power``): what ``bench power RUN_DIR`` prints."""
    rows = plan_rows(res, halfwidth, effect)
    head = (f"\n### Sizing: the seeds each row needs (`bench power`)\n\nFrom each row's per-seed values (their SD) and "
            f"its test-set term (the bootstrap spread of the median): the half-width it has, the floor no number of "
            f"seeds goes below, the seeds for a half-width of ±{halfwidth:g} and for 80% power at "
            f"{'its observed |median|' if effect is None else f'an effect of {effect:g}'} (docs/protocols.md, "
            "\"Sizing\").\n")
    if not rows:
        return head + f"\n{why_no_plan(res)}.\n"

    def seeds(n: int | None, why: str) -> str:
        return str(n) if n is not None else why

    body = [[esc(r["pair"]), esc(r["architecture"]), esc(r["ablation"]), r["role"], r["seeds"], fmt(r["median"]),
             fmt(r["seed_sd"]), fmt(r["test_sd"]), fmt(r["half_width"]) if r["half_width"] is not None else "none (< 6 seeds)",
             fmt(r["floor"]), seeds(r["seeds_for_halfwidth"], "unreachable: below the floor" if r["test_set_factor"]
                                    else f"> {MAX_SEEDS}"),
             fmt(r["effect"]), seeds(r["seeds_for_power"], f"> {MAX_SEEDS}"),
             f"x{r['test_set_factor']:.1f}" if r["test_set_factor"] else "—"] for r in rows]
    return head + "\n" + table(
        ["pair", "architecture", "ablation", "role", "seeds", "median", "seed SD", "test SD", "half-width now",
         "floor", f"seeds for ±{halfwidth:g}", "effect", "seeds for 80% power", "test set for the floor"], body)


def family_tables(v, pair: str | None) -> list[str]:
    """One table per ablation family of a verdict's rows, then the per-seed values behind them; ``pair``
    names the verdict pair in the headings when a study has several."""
    out = []
    for family, (title, intro) in FAMILY_TITLES.items():
        rows = [r for r in v.rows if r.family == family]
        if not rows:
            continue
        heading = f"{title} — pair `{esc(pair)}` ({esc(v.dense_task)} vs {esc(v.global_task)})" if pair else title
        out.append(f"\n### {heading}\n\n{intro}\n")
        out.append(table(
            ["architecture", "ablation", "role", "seeds", f"dense {r_measure(rows)} [CI]", f"global {r_measure(rows)} [CI]",
             "difference [CI]", "p", "p (Holm)", "conditioning (margin over chance: dense / global)", "call",
             "per seed (difference)"],
            [[esc(r.architecture), esc(r.ablation), r.role, r.seeds, fmt_ci(r.dense), fmt_ci(r.global_), fmt_ci(r.difference),
              fmt_p(r.difference.p), fmt_p(r.p_holm), conditioning_cell(r), f"**{r.verdict}**", per_seed(r.difference)]
             for r in rows]))
        out.append(f"\nPer seed (the values behind each interval; margin = baseline {margin_words(v.scale)} − chance):\n")
        out.append(per_seed_table(rows))
    return out


def per_seed_table(rows) -> str:
    objects = any(r.conditioning.dense_object_margin or r.conditioning.global_object_margin for r in rows)
    body = []
    for r in rows:
        c = r.conditioning
        scales = [c.dense_margin, c.global_margin] + ([c.dense_object_margin, c.global_object_margin] if objects else [])
        for seed in r.difference.per_seed:
            margins = [fmt(m.per_seed.get(seed)) if m is not None else "—" for m in scales]
            body.append([esc(r.architecture), esc(r.ablation), esc(seed), fmt(r.dense.per_seed.get(seed)),
                         fmt(r.global_.per_seed.get(seed)), fmt(r.difference.per_seed.get(seed)), *margins])
        for seed, why in r.excluded_seeds.items():
            body.append([esc(r.architecture), esc(r.ablation), esc(seed), f"excluded: {esc(why)}", *[""] * (2 + len(scales))])
        if r.missing_seeds:
            body.append([esc(r.architecture), esc(r.ablation), ", ".join(map(str, r.missing_seeds)), "no value (failed cell or "
                         "undefined D)", *[""] * (2 + len(scales))])
    return table(["architecture", "ablation", "seed", "dense", "global", "difference", "margin dense",
                  "margin global"] + (["object margin dense", "object margin global"] if objects else []), body)


def pairs_section(res: Results) -> str:
    """Several verdict pairs (e.g. one per evidence scale): each pair's headline, their interaction and what
    the two say together. Empty for a single-pair config."""
    if not res.verdicts:
        return ""
    rows = []
    for v in res.verdicts:
        h = v.headline
        rows.append([esc(v.label or v.dense_task), esc(v.dense_task), esc(v.global_task)] + (
            [f"{esc(h.ablation)} on {esc(h.architecture)}", h.seeds, fmt_ci(h.dense), fmt_ci(h.global_), fmt_ci(h.difference),
             conditioning_cell(h), f"**{h.verdict}**", per_seed(h.difference)] if h else
            ["—", 0, "—", "—", "—", "—", f"**no verdict** ({esc(v.headline_missing)})", "—"]))
    out = ["\n### One verdict per pair\n", table(
        ["pair", "dense task", "global task", "headline", "seeds", "D dense [CI]", "D global [CI]",
         "D_dense − D_global [CI]", "conditioning", "call", "per seed (difference)"], rows)]
    out += ["\n" + sensitivity_line(v) for v in res.verdicts if v.sensitivity is not None]
    out += ["\n" + localisation_line(v) for v in res.verdicts if v.localisation is not None]
    for i in ([res.interaction] if res.interaction is not None else []) + list(res.interactions):
        out.append(f"\nInteraction ({esc(i.ablation)} on {esc(i.architecture)}): median over seeds of the per-seed "
                   f"(D_dense − D_global)[{esc(i.second)}] − (D_dense − D_global)[{esc(i.first)}] = "
                   f"{fmt_ci(i.difference)} ({i.seeds} "
                   f"seeds, p = {fmt_p(i.difference.p)}; bootstrap replicate by replicate): **{i.call}** — "
                   f"{esc(i.note)}. "
                   f"Per seed: {per_seed(i.difference)}.")
    if res.interaction is not None:
        out.append("\n" + explanation(res))
    out.append("\n" + multiplicity(res))
    return "\n".join(out)


def sensitivity_line(v) -> str:
    """The headline re-measured on the other scale (results.Sensitivity): beside the call, never for it."""
    sens, name = v.sensitivity, f" (`{esc(v.label)}`)" if v.label else ""
    why = ("On the all-class scale an ablated dense model that still finds the objects keeps its background recall, "
           "so its D stays below 1 even when it no longer tells the objects apart." if sens.scale == "object classes"
           else "The all-class scale counts background as a class, so the same evidence loss reads differently on "
           "the two task kinds (docs/protocols.md, 'The dependence scale'); it was the scale before bench 0.3.2.")
    return (f"Sensitivity{name}, not the call: with D on {esc(sens.scale)} ({', '.join(map(esc, sens.tasks))}), "
            f"D_dense {fmt_ci(sens.dense)} vs D_global {fmt_ci(sens.global_)}; difference {fmt_ci(sens.difference)} "
            f"(p = {fmt_p(sens.difference.p)}; per seed {per_seed(sens.difference)}). {why}")


def localisation_line(v) -> str:
    """The dense task's D on localisation (results.Localisation): what recognition leaves out, beside the call."""
    loc, name = v.localisation, f" (`{esc(v.label)}`)" if v.label else ""
    return (f"Localisation{name}, not the call: D of `{esc(loc.task)}` on object vs background (balanced over the "
            f"two, chance 1/2) is {fmt_ci(loc.dependence)} (per seed {per_seed(loc.dependence)}). Recognition reads "
            "the object classes on object pixels only, so an ablated model that still tells the classes apart but "
            "no longer finds the objects keeps its recognition; this row shows how much finding the objects lost.")


def margin_words(scale: str) -> str:
    """What a row's margins are on (results.Verdict.scale)."""
    if scale == "recognition":
        return "recognition (balanced accuracy over the object classes)"
    return "balanced accuracy, over all classes and, where the task has a background, over the object classes"


def call_level(res: Results) -> float:
    """The level a study's headlines were called at: Pocock's per look in seed rounds, else its first pair's alpha
    (0.05 for a study without a verdict)."""
    if res.sequential is not None:
        return res.sequential.alpha_per_look
    return res.verdict.alpha if res.verdict else 0.05


def multiplicity(res: Results) -> str:
    """The pre-specified tests of a several-pair study (each pair's headline, the interaction) are each called
    at alpha; the family-wise reading (Holm over them) is stated beside, never silently swapped in."""
    decided = ("supported", "contradicted", *INTERACTION_CALL.values())
    tests = [(f"{v.label or v.dense_task} headline", v.headline.difference.p, v.headline.verdict)
             for v in res.verdicts if v.headline]
    if res.interaction is not None:
        tests.append(("interaction", res.interaction.difference.p, res.interaction.call))
    tests += [(f"interaction {i.second} − {i.first}", i.difference.p, i.call) for i in res.interactions]
    adjusted = stats.holm([p for _, p, _ in tests])
    listed = ", ".join(f"{esc(name)} {fmt_p(p)}" for (name, _, _), p in zip(tests, adjusted))
    level = call_level(res)
    at = f"α = {level:g}{' per look' if res.sequential else ''}"
    calls = [(name, p) for (name, _, call), p in zip(tests, adjusted) if call in decided]
    held = [esc(name) for name, p in calls if p is not None and p < level]
    lost = [esc(name) for name, p in calls if p is None or p >= level]
    reading = (f" Of the calls made, family-wise (Holm p < {level:g}) {', '.join(held) or 'none'} "
               f"{'holds' if len(held) == 1 else 'hold'}" + (f"; {', '.join(lost)} {'does' if len(lost) == 1 else 'do'} "
               "not" if lost else "") + "." if calls else "")
    return (f"Multiplicity: {len(tests)} pre-specified tests, each called above at {at}; Holm over them "
            f"(family-wise) gives p = {listed}.{reading} Exploratory rows are Holm-adjusted within their family "
            "across every pair.")


def explanation(res: Results) -> str:
    """What the two pairs and their interaction say together, in terms of the pairs' own labels. What a study
    makes of it (e.g. density vs detail: which hypothesis predicts which pattern) is written in that study's
    config, beside its pairs (configs/density_vs_detail.yaml), not here: this report serves every study. Both
    pairs' calls are named: a reading that named only the first (camvid_multi_head: 'separate is inconclusive')
    hid a decided second pair."""
    i = res.interaction
    if i.call in ("missing", "ill-conditioned", "underpowered", "undefined"):
        return f"Reading of the two pairs: cannot tell — the interaction is {i.call} ({esc(i.note)})."
    calls = {(v.label or v.dense_task): (v.headline.verdict if v.headline else "no verdict") for v in res.verdicts}
    each = " and ".join(f"`{esc(label)}` is **{calls.get(label, 'no verdict')}**" for label in (i.first, i.second))
    if i.call == "no detectable difference":
        return (f"Reading of the two pairs: {each}, and the dense − global gap does not detectably differ between "
                f"`{esc(i.first)}` and `{esc(i.second)}` (the interaction's interval includes 0).")
    larger, smaller = (i.second, i.first) if i.call == "second higher" else (i.first, i.second)
    return (f"Reading of the two pairs: {each}, and the dense − global gap is larger with `{esc(larger)}` than with "
            f"`{esc(smaller)}`.")


def r_measure(rows) -> str:
    return "D" if rows[0].measure == "dependence" else "sufficiency"


def conditioning_cell(r) -> str:
    c = r.conditioning
    if r.architecture == "(input)":
        return "n/a (input)"
    state = "ok" if c.ok else "ILL-CONDITIONED"
    objects = [f"{kind} {fmt_ci(m)}" for kind, m in (("dense", c.dense_object_margin), ("global", c.global_object_margin))
               if m is not None]
    tail = f"; object classes: {', '.join(objects)}" if objects else ""
    return f"{state}: {fmt_ci(c.dense_margin)} / {fmt_ci(c.global_margin)}{tail} (> {c.threshold:g})"


def models_section(res: Results) -> str:
    rows = []
    for c in res.cells:
        m = c.primary_metric
        rows.append([esc(c.task), esc(c.architecture), esc(c.variant), c.seed, esc(m),
                     fmt(c.metrics.get(m)) if c.status == "ok" else f"FAILED: {esc(c.error)}",
                     fmt(c.chance.get(m)), c.n_params, fmt(c.train.get("wall_s"), 1)])
    return "## Trained models\n\n" + table(
        ["task", "architecture", "variant", "seed", "metric", "value", "chance", "params", "train s"], rows) + "\n"


def removal_section(res: Results) -> str:
    own = {a for a in {c.ablation for c in res.comparisons}  # train-time ablations that draw their own section
           if a in ABLATIONS.names() and sections.has_own_section(ABLATIONS.get(a))}
    comparisons = [c for c in res.comparisons if c.ablation not in own]
    if not comparisons:
        return ""
    groups: dict[tuple, list] = defaultdict(list)
    for c in comparisons:
        groups[(c.task, c.architecture, c.variant, c.ablation)].append(c)
    rows = []
    for (task, arch, variant, _abl), cs in groups.items():
        full = np.mean([c.primary_full for c in cs])
        ablated = np.mean([c.primary_ablated for c in cs])
        deps = [c.dependence.estimate for c in cs if c.dependence.estimate is not None]
        ci = cs[0].dependence if len(cs) == 1 else None
        sd = float(np.std(deps, ddof=1)) if len(deps) > 1 else 0.0  # sample sd over seeds, as in leaderboard
        d = fmt_ci(ci) if ci else (f"{fmt(float(np.mean(deps)))} ± {fmt(sd)}" if deps else "—")
        rows.append([esc(task), esc(arch), esc(variant), len(cs), fmt(full), fmt(ablated), d])
    return ("## How much each task lost when its identity paths were removed\n\n"
            "Trained without identity paths under the same recipe and seeds (`skip_removal`). D is the share of the "
            "above-chance score that was lost (0 = nothing lost, 1 = down to chance).\n\n" + table(
                ["task", "architecture", "variant", "seeds", "full (mean)", "without identity (mean)",
                 "D (CI, or mean ± std over seeds)"], rows) + "\n")


def ablation_sections(res: Results, run_dir: Path) -> str:
    """One section per ablation of the config, in its order, each drawn by the renderer the reporting layer
    keeps for the ablation's class (``bench.sections``; a table of each cell's summary by default)."""
    out = []
    for spec in res.config.get("ablations", []):
        text = sections.renderer_for(ABLATIONS.get(spec["name"]))(res, run_dir, spec["name"])
        if text:
            out.append(text)
    return "\n".join(out)


def sequential_line(seq) -> str:
    """Seeds until decided: the plan, each look's headline(s), and where the study stopped and why."""
    looks = "; ".join(f"{lk.seeds} seeds: " + ", ".join(
        f"{esc(pair)} {fmt_ci({k: h[k] for k in ('estimate', 'low', 'high')}) if 'estimate' in h else '—'} "
        f"{h.get('call', '?')}" for pair, h in lk.headlines.items())
        + (f"; interaction {fmt_ci({k: lk.interaction[k] for k in ('estimate', 'low', 'high')})} "
           f"{lk.interaction.get('call', '?')}" if lk.interaction else "")
        for lk in seq.looks)
    rule = {"decided": "every headline decided", "interaction": "the two pairs' interaction is decided",
            "halfwidth": f"every headline's half-width ≤ {seq.halfwidth or 0:g}"}[seq.stop]
    pocock = seq.stop in ("decided", "interaction")
    return (f"Seeds until decided: looks planned at {', '.join(map(str, seq.planned_looks))} seeds, each at "
            f"α = {seq.alpha_per_look:g} ({'Pocock, for an overall ' + format(seq.alpha, 'g') if pocock else 'the fixed level'}), "
            f"stopping when {rule}. **Stopped at {seq.stopped_at} seeds** ({esc(seq.reason)}). Looks: {looks}.")


def preregistration_line(res: Results) -> str:
    """Was the analysis plan (the config) committed before the cells it reads? From each invocation's plan record.

    A re-assembly (no cell computed) from the run folder's own config.resolved.yaml analyses the plan recorded
    with the cells — bench wrote that file when they were computed, and refuses a run on the folder under any
    other plan — so it is judged by the invocations before it: the file's commit (made with the cells, so after
    them) says nothing about when the plan was fixed. A re-assembly from the study's own config file is judged
    as before: that file carries the plan's words (its rules in comments), and a change to them is disclosed."""
    records = [(i, i.plan) for i in res.invocations if i.plan is not None]
    if not records:
        return ("Pre-registration: not recorded (results from before bench 0.3.1, or a config outside a git "
                "repository).")
    kept = [k for k, (i, p) in enumerate(records) if not recorded_plan(i, p)] or list(range(len(records)))
    judged, later = [records[k] for k in kept], len(records) - 1 - kept[-1]
    since = (f" Re-assembled since from the run folder's own `{CONFIG}` ({later} invocation(s), no cell "
             "computed): the plan recorded with the cells.") if later else ""
    return preregistration_of(judged) + since


def recorded_plan(invocation: Invocation, plan: dict) -> bool:
    """A re-assembly from a run folder's own config.resolved.yaml: the plan recorded with its cells."""
    return invocation.cells_computed == 0 and Path(plan.get("config") or "").name == CONFIG


def preregistration_of(records: list[tuple[Invocation, dict]]) -> str:
    last = records[-1][1]
    where = f"`{esc(Path(last['config']).name)}`"
    uncommitted = [i for i, p in records if i.cells_computed != 0 and (p.get("dirty") or not p.get("commit"))]
    if uncommitted:
        return (f"Pre-registration: **not pre-registered** — the plan ({where}) had uncommitted changes when "
                f"{len(uncommitted)} invocation(s) computed cells; commit the config before computing cells.")
    if last.get("dirty") or not last.get("commit"):  # this analysis ran under a plan no commit holds
        return (f"Pre-registration: **the plan changed after cells existed** — {where} has uncommitted changes in "
                "the invocation that wrote these results: an analysis under an unrecorded plan, to be disclosed "
                "(commit the config and run again).")
    commit, when = (last.get("commit") or "?")[:10], last.get("committed_at") or "?"
    first = last.get("first_cells_head")
    if last.get("changed_after_cells"):
        return (f"Pre-registration: **the plan changed after cells existed** — {where} was last changed at {esc(commit)} "
                f"({esc(when)}), after the first cells were computed at {esc((first or '?')[:10])}: a new plan, to be "
                "disclosed as such.")
    if last.get("changed_after_cells") is False:
        return (f"Pre-registration: the plan ({where}) was last changed at {esc(commit)} ({esc(when)}), before the "
                f"first cells were computed at {esc((first or '?')[:10])}.")
    return f"Pre-registration: the plan ({where}) was last changed at {esc(commit)} ({esc(when)}); no cell commit to compare."


def provenance_section(res: Results) -> str:
    p = res.provenance
    keys = ["bench_version", "git_commit", "git_dirty", "torch", "timm", "segmentation_models_pytorch",
            "device_name", *(["cpu"] if "cpu" in p else []), "python", "platform"]  # cpu: recorded since issue 16
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items())
    runs = "".join(f"\n  - {esc((i.git_commit or '?')[:10])}{' (dirty)' if i.git_dirty else ''}: {i.study_s:.1f}s, "
                   f"{'cells computed: ' + str(i.cells_computed) if i.cells_computed is not None else 'cells not recorded'}"
                   for i in res.invocations)
    return ("## Provenance\n\n" + "\n".join(f"- {k}: {esc(p.get(k))}" for k in keys) + f"\n- wall time (this invocation): "
            f"{timing}\n" + (f"- invocations (every `bench run` on this folder, oldest first):{runs}\n" if runs else "")
            + f"- {preregistration_line(res)}\n")


def fewest_for_interval(alpha: float) -> int:
    """The fewest seeds with a distribution-free interval of the median at level 1 − alpha (6 at 95%)."""
    return next(n for n in range(1, 1000) if stats.sign_rank(n, alpha) >= 1)


def underpowered_label(v: Verdict, rows: list) -> str:
    """The legend's underpowered entry, from the reason its rows have: fewer seeds than ``min_seeds``, or too few
    for a distribution-free interval (``bench.verdict._call``)."""
    reasons = []
    need = fewest_for_interval(v.alpha)
    for r in rows:
        if r.verdict != "underpowered":
            continue
        why = (f"{r.seeds} seeds, fewer than min_seeds = {v.min_seeds}" if r.seeds < v.min_seeds else
               f"{r.seeds} seeds: below {need} no distribution-free interval")
        if why not in reasons:
            reasons.append(why)
    return f"underpowered ({'; '.join(reasons)}: no call)"


def verdict_figure(res: Results, run_dir: Path) -> str:
    """The verdict as a picture: per row, D (or sufficiency) of the dense and the global task and their difference
    Δ (what the call rests on), each with its interval where it has one, one panel per family, the headline
    starred; a row that makes no call (ill-conditioned, underpowered: with its actual reason) hatched, a side whose
    baseline is at or below chance drawn as an X, each named in the legend (``plots.STATES``); markdown embedding
    it, or "" without rows."""
    v = res.verdict
    families = [f for f in FAMILY_TITLES if v is not None and any(r.family == f for r in v.rows)]
    if not families:
        return ""
    fig, axes = plots.grid(len(families), width=4.6, height=3.4)
    intervals = False
    sides = {"dense": (-0.22, "tab:blue", "dense"), "global_": (0.0, "tab:orange", "global"),
             "difference": (0.22, "black", "Δ = dense − global (the call's)")}
    for ax, family in zip(axes, families):
        rows = [r for r in v.rows if r.family == family]
        states = [r.verdict if r.verdict in plots.STATES else None for r in rows]
        for i, state in enumerate(states):
            plots.shade(ax, i, state)
        for side, (offset, colour, label) in sides.items():
            margin = {"dense": "dense_margin", "global_": "global_margin"}.get(side)
            for i, r in enumerate(rows):
                d = getattr(r, side)
                if d.estimate is None:
                    continue
                m = getattr(r.conditioning, margin) if margin else None
                below = m is not None and m.estimate is not None and m.estimate <= 0 and r.architecture != "(input)"
                if below:
                    states.append("at or below chance")
                hollow = below or states[i] == "ill-conditioned"
                yerr = ([[d.estimate - d.low], [d.high - d.estimate]] if None not in (d.low, d.high) else None)
                intervals = intervals or yerr is not None
                marker = plots.MARKERS["at or below chance"] if below else "s" if side == "difference" else "o"
                ax.errorbar([i + offset], [d.estimate], yerr=yerr, fmt=marker, color=colour,
                            mfc="white" if hollow else colour, ms=7 if below else 6, capsize=3, label=label)
                plots.points(ax, [i + offset], [d.estimate])
                plots.extent(ax, *(x for x in (d.low, d.high) if x is not None))
        ax.axhline(0, color="grey", lw=0.6)
        plots.anchor(ax, 0, *([1] if family != "sufficiency" else []))
        if family != "sufficiency":
            ax.axhline(1, color="grey", lw=0.6, ls=":")  # chance
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_xticks(range(len(rows)), [f"{'★ ' if r.role == 'headline' else ''}{r.architecture}\n{r.ablation}\n"
                                         f"{r.verdict}" for r in rows], fontsize=7)
        ax.set_ylabel("D (0 = nothing lost, 1 = chance)" if family != "sufficiency" else "sufficiency", fontsize=8)
        ax.set_title(f"{family} family", fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        keep = {label: h for h, label in zip(handles, labels)}  # one entry per side
        marks = plots.state_handles(states, {"underpowered": underpowered_label(v, rows)})
        ax.legend([*keep.values(), *marks], [*keep, *(h.get_label() for h in marks)], fontsize=6.5,
                  loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1, frameon=False)
    png = plots.save(fig, RunDir(run_dir).figure("verdict"))
    bars = (f"with their {level(v.alpha)} intervals where a row has one" if intervals else
            "medians over seeds (no interval drawn: no row has one)")
    return (f"![verdict: D of the dense and the global task per row and their difference Δ, {bars}; ★ = the "
            f"pre-specified headline; hatched: no call (ill-conditioned or underpowered); X: a baseline at or "
            f"below chance]({png})\n")


def render(res: Results, run_dir: Path) -> str:
    parts = [f"# Identity-flow study: {esc(res.study)}\n", verdict_section(res), verdict_figure(res, run_dir),
             models_section(res),
             removal_section(res), ablation_sections(res, run_dir), provenance_section(res),
             "\n*Every number above is read from `results.json` in this folder.*\n"]
    return "\n".join(p for p in parts if p)


def verdict_summary(v: Verdict, headline_plans: list[dict], run_dir: Path) -> list[str]:
    """One verdict pair's lines in `bench run`'s summary: the headline with its interval, its sizing, the
    exploratory identity rows; a pair's label leads when the config lists several."""
    name = f" [{v.label}]" if v.label else ""
    if v.headline is None:
        return [f"verdict{name}: none — {v.headline_missing}"]
    h = v.headline
    interval = (f"{level(v.alpha)} interval, " if h.difference.low is not None else "no interval below 6 seeds, ")
    lines = [f"verdict{name}: {h.verdict.upper()} — {h.ablation} on {h.architecture}: median D({v.dense_task}) − "
             f"D({v.global_task}) = {fmt_ci(h.difference)} ({interval}{h.seeds} seeds, "
             f"p = {fmt_p(h.difference.p)}; conditioning {'ok' if h.conditioning.ok else 'FAILED'})"]
    plan = next((r for r in headline_plans if r["pair"] == (v.label or v.dense_task)), None)
    if plan and plan["seeds_for_halfwidth"]:
        lines.append(f"  sizing: about {plan['seeds_for_halfwidth']} seeds for a half-width of ±0.1 "
                     f"(bench power {run_dir})")
    for r in v.rows:
        if r.family == "identity" and r.role != "headline":
            lines.append(f"  exploratory: {r.ablation} on {r.architecture}: {fmt_ci(r.difference)}, "
                         f"Holm p = {fmt_p(r.p_holm)} -> {r.verdict}")
    return lines


def run_summary(res: Results, run_dir: Path) -> str:
    """What the end of `bench run` prints: the verdict with its interval, the identity rows, failed cells,
    and where the report, figures and leaderboard command are."""
    lines = []
    headline_plans = [r for r in plan_rows(res) if r["role"] == "headline"]
    for v in res.all_verdicts():
        lines += verdict_summary(v, headline_plans, run_dir)
    for i in ([res.interaction] if res.interaction is not None else []) + list(res.interactions):
        lines.append(f"interaction ({i.second} − {i.first}, {i.ablation} on {i.architecture}): "
                     f"{fmt_ci(i.difference)} ({i.seeds} seeds) -> {i.call}")
    failed = [c for c in res.cells if c.status != "ok"]
    for c in failed:
        lines.append(f"FAILED cell {c.id}: {c.error}")
    figures = sorted(p.name for p in Path(run_dir).glob("*.png"))
    lines.append(f"report: {run_dir}/report.md (results: {run_dir}/results.json)")
    if figures:
        lines.append(f"figures: {', '.join(figures)}")
    lines.append(f"leaderboard: python -m bench leaderboard {run_dir}")
    return "\n".join(lines)


def write_report(run_dir: Path, res: Results) -> Path:
    path = RunDir(run_dir).report
    write_text(path, render(res, Path(run_dir)))
    return path
