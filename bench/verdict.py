"""The verdict on the claim: does dense prediction depend on the identity path more than global?

Rows come in families, decided by what each ablation DECLARES (``Ablation.family``), never by name:

* ``identity`` — ablations that remove the identity path and report dependence, on architectures
  that have one. Only these speak to the claim. The config pre-specifies one of them as the headline
  (architecture + ablation); every other row is exploratory, with a Holm-adjusted p.
* ``ensemble`` — branch lesions, multi-lesion, reordering: how ensemble-like the network is for dense
  vs global prediction (Veit et al.). Reported with their own wording, never for or against the claim.
* ``sufficiency`` — the input readout: how much of the answer the input alone carries; one row.

Per seed s, Δ_s = D_dense,s − D_global,s on the study's scale (``verdict.scale``: recognition over the K
object classes, or balanced accuracy over all classes), with its test-set bootstrap replicates (the same
resampled examples in every seed and, for paired tasks, in both tasks). ``bench.stats.median_interval`` gives
the median's interval over seeds and test examples; a row with fewer seeds than ``min_seeds`` is
"underpowered", one whose baselines' mean margin does not clear the conditioning threshold is
"ill-conditioned" — neither is ever supported or contradicted. The margin is checked on the scales
``bench.metrics.scales_of`` gives: D's denominator (all classes, or recognition) and, on the all-class
measure, for a task with a background class, the object classes alone (a model that finds objects without
telling them apart clears the first by labelling background right).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bench import stats
from bench.ablations.base import dependence
from bench.config import StudyConfig, VerdictConfig, headline_architecture
from bench.data import TaskInfo
from bench.markdown import fmt
from bench.metrics import (
    ALL_CLASSES,
    CONDITIONING_SCALES,
    RECOGNITION,
    SCALES,
    Outcome,
    Scale,
    margins,
    metrics_from_sums,
    scales_of,
    shared_weights,
)
from bench.results import (
    INTERACTION_CALL,
    Cell,
    Comparison,
    Conditioning,
    Decision,
    Interaction,
    Localisation,
    Sensitivity,
    Verdict,
    VerdictRow,
    cell_id,
)

SCALE_TEXT = {
    ALL_CLASSES.name: "on balanced accuracy (D = 1 − (m_ablated − m_chance)/(m_full − m_chance), chance = 1/C over "
                      "the C classes present in the test labels)",
    RECOGNITION.name: "on recognition: balanced accuracy over the K object classes on object pixels/images, the "
                      "background logit left out (D = 1 − (m_ablated − m_chance)/(m_full − m_chance), chance = 1/K over "
                      "the object classes present in the test labels)",
}
METHOD = ("Per seed, D_dense − D_global {scale}. Estimand: the median over seeds. Interval: "
          "the sign test's order statistics over seeds (valid for any distribution of seeds: collapsed, skewed, "
          "heavy-tailed), widened in quadrature by the test-set bootstrap spread of the median (the same resampled "
          "examples in every seed); calibrated by simulation (≤ 5% false calls; docs/protocols.md). Seeds whose "
          "baseline did not converge (max_train_loss, fixed before results) are excluded, blind. Headline: "
          "supported if the interval is above 0, contradicted if below; exploratory rows: Holm-adjusted p < alpha (Holm over "
          "the family's exploratory rows of every verdict pair of the study). "
          "Fewer than min_seeds seeds: underpowered; a mean baseline margin over chance whose interval does not clear "
          "the threshold ({margins}): ill-conditioned.")
MARGINS_TEXT = {ALL_CLASSES.name: "over all classes, and over the object classes of a task with a background",
                RECOGNITION.name: "on recognition, D's denominator"}


def method(d_scale: Scale) -> str:
    """The decision rule in words, on the study's scale."""
    return METHOD.format(scale=SCALE_TEXT[d_scale.name], margins=MARGINS_TEXT[d_scale.name])

Series = dict[int, tuple[float, np.ndarray]]  # seed -> (point value, bootstrap replicates)
(ALL, _, _), (OBJECTS, OBJECT_METRIC, OBJECT_CHANCE) = CONDITIONING_SCALES
LOCALISATION, LOCALISATION_CHANCE = "localisation_balanced_accuracy", "localisation_chance"


@dataclass(frozen=True)
class Evidence:
    """What the verdict reads, all in memory: the cells, their comparisons, each cell's arrays (per-example
    statistics, test-time ablations' replicates) and each variant's dependence replicates."""

    cells: list[Cell]
    comparisons: list[Comparison]
    arrays: Mapping[str, Mapping[str, np.ndarray]]  # cell id -> its npz arrays
    dependence_boots: Mapping[str, np.ndarray]  # variant cell id -> D's bootstrap replicates
    infos: Mapping[str, TaskInfo]  # task alias -> its TaskInfo

    def array(self, cid: str, key: str) -> np.ndarray | None:
        return self.arrays.get(cid, {}).get(key)


def _baselines(cells: list[Cell], task: str, arch: str) -> list[Cell]:
    return [c for c in cells if (c.task, c.architecture, c.variant, c.status) == (task, arch, "baseline", "ok")]


def _series(task: str, arch: str, ablation: str, phase: str, measure: str, ev: Evidence) -> Series:
    """Per seed: the ablation's measure and its bootstrap replicates, for one task and architecture."""
    out: Series = {}
    if phase == "test":
        for c in _baselines(ev.cells, task, arch):
            if ablation in c.ablations:
                value = c.ablations[ablation].summary.get(measure)
                boot = ev.array(c.id, f"boot__{ablation}")
                if value is not None and boot is not None:
                    out[c.seed] = (float(value), boot)
        return out
    mine = [c for c in ev.comparisons if (c.task, c.architecture, c.ablation) == (task, arch, ablation)]
    for c in mine:  # the ablation's declared headline variant (its first), never chosen from the data
        if c.headline and c.dependence.estimate is not None:
            boot = ev.dependence_boots.get(cell_id(task, arch, c.variant, c.seed))
            if boot is not None:
                out[c.seed] = (c.dependence.estimate, boot)
    return out


def _margins(task: str, arch: str, ev: Evidence, replicates: int, d_scale: Scale = ALL_CLASSES) -> dict[str, Series]:
    """Per conditioning scale, per seed: the baseline's margin over chance with its replicates, computed
    from the baseline's stored per-example statistics (``bench.metrics.margins``)."""
    out: dict[str, Series] = {}
    info = ev.infos[task]
    for c in _baselines(ev.cells, task, arch):
        stats_ = ev.array(c.id, "stats")
        if stats_ is None:
            continue
        for scale, value in margins(Outcome(stats_, info), shared_weights(len(stats_), replicates), d_scale).items():
            out.setdefault(scale, {})[c.seed] = value
    return out


def _decision(series: Series, seeds: list[int], alpha: float, rule=stats.median_interval) -> Decision:
    """A quantity over seeds: by default the verdict's rule (the median, ``bench.stats.median_interval``); the
    conditioning check passes ``bench.stats.interval`` (the mean margin: how large D's denominator is on average)."""
    x = np.array([series[s][0] for s in seeds])
    boots = np.stack([series[s][1] for s in seeds]) if seeds else np.empty((0, 0))
    est = rule(x, boots, alpha)
    return Decision(estimate=r(est.estimate), low=r(est.low), high=r(est.high), se=r(est.se), df=est.df,
                    p=None if est.p is None else float(f"{est.p:.6g}"), dropped_replicates=est.dropped_replicates,
                    test_sd=r(est.test_sd),
                    per_seed={str(s): r(float(series[s][0])) for s in seeds})


def r(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def _difference(d: Series, g: Series, seeds: list[int]) -> Series:
    return {s: (d[s][0] - g[s][0], d[s][1] - g[s][1]) for s in seeds}


def _conditioning(dense: str, glob: str, arch: str, seeds: list[int], ev: Evidence, threshold: float, alpha: float,
                  replicates: int, d_scale: Scale = ALL_CLASSES) -> Conditioning:
    checked: dict[tuple[str, str], Decision] = {}  # (task, scale) -> its margin over the seeds
    unchecked: list[str] = []  # a seed whose baseline statistics are missing: its margin cannot be checked
    for task in (dense, glob):
        found = _margins(task, arch, ev, replicates, d_scale)
        for scale, _, _ in scales_of(ev.infos[task], d_scale):
            m = found.get(scale, {})
            unchecked += [f"{task} s{seed} {scale}" for seed in seeds if seed not in m]
            checked[task, scale] = _decision(m, [s for s in seeds if s in m], alpha, stats.interval)
    # the mean margin's interval must clear the threshold: a rule that gains with seeds. A single weak seed
    # is named in the note but does not sink the row (the median's interval is robust to it); a seed that
    # did not converge is excluded before this, blind, by the config's max_train_loss (``excluded_seeds``)
    weak_seeds = [f"{t} s{seed} {scale} ({fmt(v)})" for (t, scale), m in checked.items()
                  for seed, v in m.per_seed.items() if v is None or v <= threshold]
    lows = {key: m.low for key, m in checked.items()}
    ok = not unchecked and all(v is not None and v > threshold for v in lows.values())
    objects = "; a margin over the object classes says the model tells the classes apart, not only where objects are"
    if unchecked:
        note = (f"no baseline statistics (cells/<id>.npz `stats`) for {', '.join(unchecked)}: the margin over chance "
                "is unchecked; re-run those cells")
    elif ok:
        note = (f"the mean baseline margin over chance clears {threshold:g} (interval lower bound) on both tasks and "
                f"every scale checked ({', '.join(sorted({scale for _, scale in checked}))})"
                + (f"; at or below it in {', '.join(weak_seeds)} (counted, not excluded: the median is robust to "
                   "a few such seeds)" if weak_seeds else ""))
    elif any(v is None for v in lows.values()):
        note = "a margin has no interval (fewer than 2 seeds): D's denominator is unchecked"
    else:
        weak = [f"{t} ({scale})" for (t, scale), v in lows.items() if v <= threshold]
        note = (f"{', '.join(weak)}: the mean baseline margin over chance may be below {threshold:g} "
                f"(interval lower bound), so D divides by a margin that may be near 0; train longer{objects}")
    first = scales_of(ev.infos[dense], d_scale)[0][0]  # D's denominator: all classes, or recognition
    return Conditioning(threshold=threshold, dense_margin=checked.get((dense, first)),
                        global_margin=checked.get((glob, first)), dense_object_margin=checked.get((dense, OBJECTS)),
                        global_object_margin=checked.get((glob, OBJECTS)), ok=ok, note=note,
                        scale=None if d_scale == ALL_CLASSES else first)


def _excluded(spec: VerdictConfig, arch: str, cells: list[Cell]) -> dict[str, str]:
    """Seeds left out of a row before any D is read: the config's blind rule on each baseline's training loss
    (``max_train_loss``; the last batch's or the last epoch's mean, ``exclusion_loss``), seed -> why."""
    out: dict[str, str] = {}
    key, words = (("final_loss", "final training loss") if spec.exclusion_loss == "final"
                  else ("last_epoch_loss", "last-epoch mean training loss"))
    for task, limit in spec.max_train_loss.items():
        for c in _baselines(cells, task, arch):
            loss = c.train.get(key)
            if not isinstance(loss, (int, float)):
                out.setdefault(str(c.seed), f"{task} baseline {words} not recorded (a cell computed before bench "
                                            "recorded it: read the final loss, exclusion_loss: final, or recompute with bench run --restart)")
            elif not loss <= limit:
                out.setdefault(str(c.seed), f"{task} baseline {words} {fmt(loss)} > {limit:g}")
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _has_identity(cells: list[Cell], arch: str) -> bool:
    flows = [c.identity_flow for c in cells if c.architecture == arch and c.identity_flow]
    return any(f.get("residual_blocks", 0) + f.get("skips", 0) > 0 for f in flows)


def compute_verdicts(cfg: StudyConfig, ev: Evidence, declarations: dict[str, dict],
                     ) -> tuple[Verdict | None, list[Verdict], Interaction | None, list[Interaction]]:
    """(first pair's verdict, every pair's verdict when the config lists several, their interaction when it
    lists exactly two with the same headline ablation, and — when it lists more than two — the interaction of
    every two pairs that share a headline ablation, in config order). A pure function of the config and the
    evidence."""
    specs = cfg.verdict_pairs()
    done = [_pair_verdict(s, cfg, ev, declarations) for s in specs]
    if not isinstance(cfg.verdict, list):
        return (done[0][0] if done else None), [], None, []
    done = _across_pairs(done)
    first = done[0][0] if done else None
    verdicts = [v for v, _ in done]
    heads = [(s.ablation, headline_architecture(cfg, s)) for s in specs]
    pairs = [(i, j) for i in range(len(done)) for j in range(i + 1, len(done)) if heads[i][0] == heads[j][0]]
    # one headline ablation: two evidence scales on one architecture, two arms of one design (separate networks
    # vs both heads in one: ``multi_head``), or two architectures' identity paths (a U-Net's skips, a ViT's taps)
    found = [_interaction(done[i], done[j], heads[i][0], " → ".join(dict.fromkeys((heads[i][1], heads[j][1]))))
             for i, j in pairs]
    if len(done) == 2:
        return first, verdicts, (found[0] if found else None), []
    return first, verdicts, None, found


def _interaction(a: tuple[Verdict, Series], b: tuple[Verdict, Series], ablation: str, arch: str) -> Interaction:
    """(D_dense − D_global)[b] − (D_dense − D_global)[a] per seed, replicate k minus replicate k: independent
    test sets' variances add; same-size test sets share resampled indices, a paired bootstrap (results.Interaction)."""
    (va, da), (vb, db) = a, b
    first, second = va.label or va.dense_task, vb.label or vb.dense_task
    seeds = sorted(set(da) & set(db))
    with np.errstate(invalid="ignore"):  # inf − inf (a replicate whose baseline hit chance in both): NaN, dropped
        series = {s: (db[s][0] - da[s][0], db[s][1] - da[s][1]) for s in seeds}  # by the rule as non-finite
    alpha, min_seeds = max(va.alpha, vb.alpha), max(va.min_seeds, vb.min_seeds)
    decision = _decision(series, seeds, alpha)
    heads = (va.headline, vb.headline)
    if any(h is None for h in heads) or not seeds:
        call, note = "missing", "a pair has no headline result, so there is nothing to compare"
    elif not all(h.conditioning.ok for h in heads):
        call, note = "ill-conditioned", "a baseline's margin over chance fails the conditioning check in a pair"
    elif len(seeds) < min_seeds or stats.sign_rank(len(seeds), alpha) < 1:
        call, note = "underpowered", (f"{len(seeds)} seeds in both pairs, fewer than min_seeds = {min_seeds} (or than "
                                      "a distribution-free interval needs)")
    elif decision.low is None:  # the rule gives no interval: a seed's value, or too many replicates, not finite
        bad = [str(s) for s in seeds if not np.isfinite(series[s][0])]
        call, note = "undefined", (f"seed(s) {', '.join(bad)} have no finite value, so the rule gives no interval" if bad
                                   else "fewer than two bootstrap replicates are finite in every seed (a D undefined "
                                   "there), so the rule gives no interval")
    else:
        direction = stats.call(stats.Estimate(decision.estimate, decision.low, decision.high, decision.se,
                                              decision.df, decision.p))
        call = INTERACTION_CALL.get(direction,
                                                                                "no detectable difference")
        note = f"the interval of ({second}) − ({first}) is {'above' if direction == 'supported' else 'below' if direction == 'contradicted' else 'across'} 0"
    return Interaction(first=first, second=second, architecture=arch, ablation=ablation, seeds=len(seeds),
                       difference=decision, call=call, note=note)


def _pair_verdict(spec: VerdictConfig, cfg: StudyConfig, ev: Evidence,
                  declarations: dict[str, dict]) -> tuple[Verdict, Series]:
    """One dense/global pair's verdict, and its headline row's per-seed difference series (replicates kept)."""
    dense, glob = spec.dense, spec.global_
    alpha, min_seeds, threshold = spec.alpha, spec.min_seeds, spec.min_margin
    d_scale = SCALES[spec.scale]
    head_arch = headline_architecture(cfg, spec)
    rows: list[VerdictRow] = []
    head_series: Series = {}
    head_sides: tuple[Series, Series] = ({}, {})
    head_excluded: dict[str, str] = {}  # set when the blind rule took every headline seed that had results
    for abl in (a.name for a in cfg.ablations):
        decl = declarations[abl]
        family = decl["family"]
        if family not in ("identity", "ensemble", "sufficiency"):
            continue
        archs = list(cfg.architectures)[:1] if decl["reads"] == "input" else list(cfg.architectures)
        for arch in archs:
            if family == "identity" and not _has_identity(ev.cells, arch):
                continue  # a plain net has no identity path to remove: no row, not a zero
            d = _series(dense, arch, abl, decl["phase"], decl["measure"], ev)
            g = _series(glob, arch, abl, decl["phase"], decl["measure"], ev)
            excluded = _excluded(spec, arch, ev.cells)
            out = {int(s) for s in excluded}
            if (arch, abl) == (head_arch, spec.ablation) and set(d) & set(g) <= out:
                head_excluded = excluded  # every seed with results was excluded: the verdict says so
            seeds = sorted((set(d) & set(g)) - out)
            if not seeds:
                continue
            missing = [s for s in cfg.seeds if s not in seeds and str(s) not in excluded]
            if decl["reads"] == "input":
                conditioning = Conditioning(threshold=threshold, dense_margin=None, global_margin=None, ok=True,
                                            note="sufficiency divides by 1 − chance, not by a model's margin")
            else:
                conditioning = _conditioning(dense, glob, arch, seeds, ev, threshold, alpha, cfg.bootstrap, d_scale)
            headline = family == "identity" and (arch, abl) == (head_arch, spec.ablation)
            diff = _difference(d, g, seeds)
            if headline:
                kept = set(seeds)  # the excluded seeds stay out of the sensitivity row too
                head_series = diff
                head_sides = ({k: v for k, v in d.items() if k in kept}, {k: v for k, v in g.items() if k in kept})
            rows.append(VerdictRow(
                family=family, role="headline" if headline else "exploratory",
                architecture="(input)" if decl["reads"] == "input" else arch, ablation=abl, measure=decl["measure"],
                seeds=len(seeds), dense=_decision(d, seeds, alpha), global_=_decision(g, seeds, alpha),
                difference=_decision(diff, seeds, alpha), conditioning=conditioning,
                missing_seeds=missing, excluded_seeds=excluded, verdict="inconclusive"))
    rows = _decide(rows, alpha, min_seeds)
    headline_row = next((r for r in rows if r.role == "headline"), None)
    missing = None if headline_row else (
        f"no result for {spec.ablation} on {head_arch}: the blind rule (max_train_loss) excluded every seed "
        f"({len(head_excluded)}; e.g. s{next(iter(head_excluded))}: {next(iter(head_excluded.values()))})"
        if head_excluded else
        f"no result for {spec.ablation} on {head_arch}: every seed of a pair failed, the ablation was not "
        "applicable, or a task is missing from the matrix for it")
    sensitivity = None
    if headline_row is not None:
        sensitivity = _sensitivity(dense, glob, head_arch, spec.ablation, declarations[spec.ablation], head_sides,
                                   ev, cfg.bootstrap, alpha, d_scale)
    localisation = None
    if headline_row is not None and declarations[spec.ablation]["phase"] == "train":
        localisation = _localisation(dense, head_arch, spec.ablation, sorted(head_sides[0]), ev, cfg.bootstrap, alpha)
    return Verdict(label=spec.label, dense_task=dense, global_task=glob, alpha=alpha, min_seeds=min_seeds,
                   headline=headline_row, headline_missing=missing, rows=rows, method=method(d_scale),
                   sensitivity=sensitivity, localisation=localisation, scale=d_scale.name), head_series


def _localisation(dense: str, arch: str, ablation: str, seeds: list[int], ev: Evidence, replicates: int,
                  alpha: float) -> Localisation | None:
    """The headline's dense D on localisation (object vs background, chance 1/2) over the headline's seeds; None
    for a task without a background class, or cells from before bench 0.3.1 (their statistics lack the columns)."""
    if ev.infos[dense].background_index is None or not all(_has_localisation(dense, arch, s, ev) for s in seeds):
        return None
    series = _dependence_on(dense, arch, ablation, ev, replicates, LOCALISATION, LOCALISATION_CHANCE)
    kept = [s for s in seeds if s in series]
    return Localisation(task=dense, dependence=_decision(series, kept, alpha)) if kept else None


def _has_localisation(task: str, arch: str, seed: int, ev: Evidence) -> bool:
    stats_ = ev.array(cell_id(task, arch, "baseline", seed), "stats")
    return stats_ is not None and LOCALISATION in metrics_from_sums(stats_.sum(0), ev.infos[task])


def _sensitivity(dense: str, glob: str, arch: str, ablation: str, decl: dict, sides: tuple[Series, Series],
                 ev: Evidence, replicates: int, alpha: float, d_scale: Scale) -> Sensitivity | None:
    """The headline re-measured on the other scale (results.Sensitivity): under all classes, D over the object
    classes of each task that has a background; under recognition, D over all classes of both tasks (what the
    study would have read before bench 0.3.2). Needs the ablated model's per-example statistics, which only
    train-time ablations store (a cell each)."""
    if decl["phase"] != "train":
        return None
    if d_scale == ALL_CLASSES:
        tasks = [t for t in (dense, glob) if ev.infos[t].background_index is not None]
        scale, metric, chance = OBJECTS, OBJECT_METRIC, OBJECT_CHANCE
    else:
        tasks = [dense, glob]
        scale, metric, chance = ALL, ALL_CLASSES.metric, ALL_CLASSES.chance
    if not tasks:
        return None
    series = dict(zip((dense, glob), sides))
    for task in tasks:
        series[task] = _dependence_on(task, arch, ablation, ev, replicates, metric, chance)
    seeds = sorted(set(series[dense]) & set(series[glob]) & set(sides[0]) & set(sides[1]))  # the row's seeds
    return Sensitivity(scale=scale, tasks=tasks, dense=_decision(series[dense], seeds, alpha),
                       global_=_decision(series[glob], seeds, alpha),
                       difference=_decision(_difference(series[dense], series[glob], seeds), seeds, alpha))


def _dependence_on(task: str, arch: str, ablation: str, ev: Evidence, replicates: int, metric: str,
                   chance: str) -> Series:
    """Per seed: D of the headline variant vs its baseline on ``metric`` (chance ``chance``), with replicates."""
    out: Series = {}
    info = ev.infos[task]
    for c in ev.comparisons:
        if (c.task, c.architecture, c.ablation, c.headline) != (task, arch, ablation, True):
            continue
        full, abl = (ev.array(cell_id(task, arch, v, c.seed), "stats") for v in ("baseline", c.variant))
        if full is None or abl is None:
            continue
        full, abl = Outcome(full, info), Outcome(abl, info)
        w = shared_weights(full.n, replicates)
        value = float(dependence(abl.value(metric), full.value(metric), full.value(chance)))
        if np.isfinite(value):
            out[c.seed] = (value, dependence(abl.bootstrap(w, metric), full.bootstrap(w, metric),
                                             full.bootstrap(w, chance)))
    return out


def _decide(rows: list[VerdictRow], alpha: float, min_seeds: int) -> list[VerdictRow]:
    """Holm within each family's exploratory rows; then each row's call (module docstring)."""
    return [r.model_copy(update={"verdict": _call(r, alpha, min_seeds)}) for r in _holm(rows)]


def _holm(rows: list[VerdictRow]) -> list[VerdictRow]:
    out = list(rows)
    for family in ("identity", "ensemble", "sufficiency"):
        idx = [i for i, r in enumerate(out) if r.family == family and r.role == "exploratory"]
        adjusted = stats.holm([out[i].difference.p for i in idx])
        for i, p in zip(idx, adjusted):
            out[i] = out[i].model_copy(update={"p_holm": None if p is None else float(f"{p:.6g}")})
    return out


def _across_pairs(done: list[tuple[Verdict, Series]]) -> list[tuple[Verdict, Series]]:
    """Several pairs: each family's exploratory rows of EVERY pair are one Holm family, so a study that
    asks the same question on two evidence scales pays for both; each row is then called at its pair's alpha.
    A row that several pairs share (the same dense and global tasks, architecture, ablation and family: pairs
    on one task pair list the same exploratory rows) is one test, counted once."""
    def key(v: Verdict, r: VerdictRow) -> tuple:
        return (r.family, r.role, r.architecture, r.ablation, v.dense_task, v.global_task, v.scale)

    unique: dict[tuple, VerdictRow] = {}
    for v, _ in done:
        for r in v.rows:
            unique.setdefault(key(v, r), r)
    adjusted = dict(zip(unique, _holm(list(unique.values()))))
    out = []
    for v, series in done:
        rows = [r.model_copy(update={"p_holm": adjusted[key(v, r)].p_holm}) for r in v.rows]
        rows = [r.model_copy(update={"verdict": _call(r, v.alpha, v.min_seeds)}) for r in rows]
        out.append((v.model_copy(update={"rows": rows, "headline": next((r for r in rows if r.role == "headline"),
                                                                         None)}), series))
    return out


def _call(row: VerdictRow, alpha: float, min_seeds: int) -> str:
    # first: with too few seeds the margins have no interval either, and below 6 seeds (alpha 0.05) the median
    # has no distribution-free interval at all
    if row.seeds < min_seeds or stats.sign_rank(row.seeds, alpha) < 1:
        return "underpowered"
    if not row.conditioning.ok:
        return "ill-conditioned"
    diff = row.difference
    if row.role == "headline":
        direction = stats.call(stats.Estimate(diff.estimate, diff.low, diff.high, diff.se, diff.df, diff.p))
    elif row.p_holm is not None and row.p_holm < alpha and diff.estimate:
        direction = "supported" if diff.estimate > 0 else "contradicted"
    else:
        direction = "inconclusive"
    if row.family != "identity" and direction != "inconclusive":  # own wording: never for or against the claim
        return "dense higher" if direction == "supported" else "global higher"
    return direction

