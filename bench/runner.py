"""Compute a cell: train one (task, architecture, variant, seed), run its ablations; assemble results.

The same ``Study.run_unit`` runs in the driver (``local``) and in every worker (processes, Ray,
Slurm: ``bench.executors``). Each finished cell is written atomically (``RunDir.cell_json`` /
``cell_npz``), so a re-run with the same config and folder skips finished cells and resumes an
interrupted training from its last epoch checkpoint. ``results.json`` and ``report.md`` are
assembled from the cell files at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from bench.ablations.base import AblationContext, dependence
from bench.data import Task, TaskInfo
from bench.errors import BenchError, worker_error
from bench.evaluate import predict_stats
from bench.flow import IdentityFlow, identity_flow, set_edits
from bench.io import atomic_write, save_npz
from bench.metrics import SCALE, Outcome, chance_outcome, primary_metric, shared_weights
from bench.plan import ResolvedStudy, Unit, build_ablations, build_model, flow_of, plan
from bench.progress import StudyProgress
from bench.provenance import CELL_PROVENANCE
from bench.registry import TASKS
from bench.results import SCHEMA_VERSION, Cell, Comparison, Interval, Results
from bench.rundir import RunDir, cell_id
from bench.train import DivergedError, train

if TYPE_CHECKING:
    from bench.executors import Executor

__all__ = ["Study", "Unit", "build_ablations", "build_model", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device: {name!r} requested but CUDA is not available here; use device: cpu or auto")
    return torch.device(name)


class Study:
    """The cell computation of one study in one process: the driver (``local``) and every worker build
    one. ``bench.execute`` drives a run, ``bench.executors`` decide where cells run; ``RunDir`` says where their files go."""

    def __init__(self, study: ResolvedStudy, out: Path | None = None, restart: bool = False,
                 show_progress: bool = True):
        self.study = study
        self.cfg, self.resolved, self.config_path = study.cfg, study.resolved, study.path
        self.dir = Path(out) if out else study.default_dir()
        self.run_dir = RunDir(self.dir)
        self.restart = restart
        self.device = resolve_device(study.device)
        self.ablations = build_ablations(self.resolved)
        self._flows: dict[str, IdentityFlow] = {}
        self.show_progress = show_progress
        self._tasks: dict[str, Task] = {}
        self.timings: dict[str, float] = {}
        self.provenance: dict = {}  # taken when the run starts (a resumed run: when it resumed)
        # under torchrun every rank trains (DDP) and evaluates the full test set; rank 0 alone writes
        self.writer = not dist.is_initialized() or dist.get_rank() == 0

    # -- set-up ------------------------------------------------------------------------------
    def task(self, alias: str) -> Task:
        if alias not in self._tasks:
            t0 = time.perf_counter()
            try:
                self._tasks[alias] = TASKS.build(self.resolved["tasks"][alias])
            except BenchError:
                raise
            except Exception as exc:  # e.g. n_train: 0, num_classes: 0: parameters the factory cannot build
                raise BenchError(f"{self.config_path}: tasks.{alias}: cannot build the task ({_line(exc)}); "
                                 "check its parameters (--debug shows the traceback)") from exc
            self.timings[f"load_task.{alias}"] = round(time.perf_counter() - t0, 3)
        return self._tasks[alias]

    def probe(self, task_alias: str, arch: str) -> None:
        """One forward pass and loss on two training examples, on the CPU: an architecture that cannot
        read the task's images (too small for its depth, zero width, wrong output shape) is a config
        error found before anything is written, not a traceback in the middle of a sweep."""
        task, where = self.task(task_alias), f"{self.config_path}: architectures.{arch} on tasks.{task_alias}"
        for split in ("train", "test"):
            if len(getattr(task, split)) == 0:
                raise BenchError(f"{self.config_path}: tasks.{task_alias}: the {split} split is empty; give it examples")
        try:
            x, y = next(iter(task.train.batches(2, train=True, epoch=0, seed=0)))
            model = build_model(self.resolved, arch, task.info).eval()
            ignore = task.info.ignore_index if task.info.ignore_index is not None else -100
            with torch.no_grad():
                torch.nn.functional.cross_entropy(model(x), y, ignore_index=ignore)
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"{where}: one forward pass on 2 training images fails ({_line(exc)}); "
                             "check image_size, depth and width (--debug shows the traceback)") from exc

    def units(self) -> list[Unit]:
        return plan(self.study, self.ablations)

    def check_headline(self) -> None:
        """The pre-specified headline must be able to exist: an architecture with an identity path that the
        headline ablation can remove, trained on both verdict tasks (found before anything is written)."""
        from bench.verdict import natural_dense, verdict_specs

        for spec in verdict_specs(self.resolved):
            arch = spec.get("architecture") or natural_dense(self.resolved)
            where = f"{self.config_path}: verdict"
            pairs = set(self.cfg.pairs())
            missing = [t for t in (spec["dense"], spec["global"]) if (t, arch) not in pairs]
            if missing and spec.get("architecture") is None:
                continue  # a default headline a study drops on purpose: the report says "no verdict" and why
            if missing:
                raise BenchError(f"{where}: the headline architecture {arch!r} is not run on {', '.join(missing)}; "
                                 "add the pair to matrix or name another architecture")
            reason = self.ablations[spec["ablation"]].applicable(self.flow(arch))
            if reason:
                raise BenchError(f"{where}: {spec['ablation']} cannot run on the headline architecture {arch!r} "
                                 f"({reason}); name an architecture with identity paths")

    def flow(self, arch: str) -> IdentityFlow:
        """The architecture's identity flow, built once (it is read, never changed)."""
        if arch not in self._flows:
            self._flows[arch] = flow_of(self.resolved, arch)
        return self._flows[arch]

    def versions(self, unit: Unit) -> dict[str, int]:
        """The declared versions of the ablations that shape a cell: a variant's train-time ablation, or
        every test-time ablation a baseline cell runs (or finds not applicable)."""
        if unit.ablation is not None:
            return {unit.ablation: self.ablations[unit.ablation].version}
        if unit.variant != "baseline":
            return {}
        return {n: a.version for n, a in self.ablations.items() if a.phase == "test"}

    def stale(self, unit: Unit) -> str | None:
        """Why a finished cell must be recomputed, or None: an ablation that shaped it ran at another
        version than the one declared now (e.g. a bench 0.1 cell, on the old dependence scale, in a
        resumed folder), or would now be applicable where it was not (or the reverse)."""
        cell, where = self.run_dir.read_cell(unit.id), self.run_dir.cell_json(unit.id)  # checked whole by cell_state
        want = self.versions(unit)
        if cell.ablation_versions != want:
            return (f"{where}: computed with ablation versions {cell.ablation_versions or '(unrecorded)'}, "
                    f"this bench declares {want}")
        if unit.variant == "baseline" and cell.status == "ok":  # a diverged cell ran no ablation
            flow = self.flow(unit.arch)
            for name, abl in self.ablations.items():
                if abl.phase != "test":
                    continue
                now_na = abl.applicable(flow) is not None
                if now_na != (name in cell.not_applicable) or (not now_na and name not in cell.ablations):
                    return f"{where}: {name} is {'not ' if now_na else ''}applicable now, unlike when the cell was computed"
        return None

    # -- running -----------------------------------------------------------------------------
    def run(self, executor: Executor | None = None) -> Path:
        from bench.execute import run_study
        from bench.executors import LocalExecutor

        return run_study(self, executor or LocalExecutor())

    def run_unit(self, unit: Unit, progress: StudyProgress) -> dict:
        task = self.task(unit.task)
        info = task.info
        torch.manual_seed(unit.seed)
        model = build_model(self.resolved, unit.arch, info)
        flow = identity_flow(model)
        # a training variant keeps its edits for life
        set_edits([(model.get_submodule(flow[name].merge), edit) for name, edit in unit.edits.items()])
        cell: dict = {"id": unit.id, "task": unit.task, "architecture": unit.arch, "variant": unit.variant,
                      "seed": unit.seed, "status": "ok", "task_kind": info.kind,
                      "primary_metric": primary_metric(info), "n_test": len(task.test),
                      "n_params": sum(p.numel() for p in model.parameters()),
                      "pretraining": getattr(model, "pretraining", None),
                      "identity_flow": {"blocks": len(flow.blocks), "residual_blocks": len(flow.residual_blocks),
                                        "skips": len(flow.skips)}, "timings": {},
                      "computed_with": {k: self.provenance.get(k) for k in CELL_PROVENANCE},
                      "ablation_versions": self.versions(unit)}
        ckpt = self.run_dir.checkpoint(unit.id)
        t0 = time.perf_counter()
        try:
            cell["train"] = train(model, task, self.cfg.train, seed=unit.seed, device=self.device,
                                  checkpoint=ckpt, on_step=progress.step,
                                  resume=self.run_dir.load_checkpoint(unit.id, self.device))
        except DivergedError as exc:
            cell.update(status="failed", error=f"diverged: {exc}")
            if self.writer:
                save_npz(self.run_dir.cell_npz(unit.id))
            return cell
        cell["timings"]["train_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        baseline = predict_stats(model, task.test, info, batch_size=self.cfg.train.eval_batch_size,
                                 device=self.device, amp=self.cfg.train.amp)
        chance = chance_outcome(task.train.targets(), task.test.targets(), info)
        cell["metrics"], cell["chance"] = baseline.metrics(), chance.metrics()
        cell["timings"]["eval_s"] = round(time.perf_counter() - t0, 3)
        weights = shared_weights(baseline.n, self.cfg.bootstrap)
        # the verdict's conditioning check reads the baseline's margins over chance from its stats
        arrays = {"stats": baseline.stats, "chance_stats": chance.stats}
        cell["ablations"], cell["not_applicable"] = {}, {}
        if unit.variant == "baseline":
            for name, abl in self.ablations.items():
                if abl.phase != "test":
                    continue
                reason = abl.applicable(flow)
                if reason:
                    cell["not_applicable"][name] = reason
                    continue
                progress.start(f"{unit.id} · {name}")
                ctx = AblationContext(model, flow, task, self.device, unit.seed, baseline, chance, weights,
                                      self.cfg.train.eval_batch_size, self.cfg.train.amp, abl.params)
                t1 = time.perf_counter()
                out = abl.run(ctx)
                summary = declared(name, type(abl).Summary, out.summary, "its summary")  # the declared types
                records = [declared(name, type(abl).Record, r, f"record {i}") for i, r in enumerate(out.records)]
                ci = _interval(summary.get(abl.measure), out.summary_boot)
                cell["ablations"][name] = {"version": abl.version, "settings": abl.params.model_dump(),
                                           "records": records, "summary": summary, "summary_ci": ci,
                                           "wall_s": round(time.perf_counter() - t1, 3)}
                if out.summary_boot is not None:
                    arrays[f"boot__{name}"] = np.asarray(out.summary_boot)
        if self.writer:
            save_npz(self.run_dir.cell_npz(unit.id), **arrays)
        return cell

    # -- assembling --------------------------------------------------------------------------
    def assemble(self, units: list[Unit]) -> Results:
        cells = [self.run_dir.load_cell(u.id) for u in units]
        comparisons = self.comparisons(units, cells)
        from bench.verdict import compute_verdicts

        declarations = {n: type(a).declaration() for n, a in self.ablations.items()}
        infos = {alias: self.task_info(alias) for alias in {c.task for c in cells}}
        verdict, verdicts, interaction = compute_verdicts(self.resolved, cells, comparisons, self.dir, declarations,
                                                          infos)
        # `study` is this invocation's wall time; a resumed run reuses cells computed earlier, so the
        # compute behind the results is the cells' own time (training, evaluation, ablations)
        self.timings["cells"] = round(sum(sum(c.timings.values()) + sum(a.wall_s for a in c.ablations.values())
                                          for c in cells), 3)
        return Results(schema_version=SCHEMA_VERSION, study=self.resolved["name"], config=self.resolved,
                       provenance=self.provenance, timings=self.timings, scale=SCALE,
                       ablations=declarations,
                       cells=cells, comparisons=comparisons, verdict=verdict, verdicts=verdicts,
                       interaction=interaction)

    def comparisons(self, units: list[Unit], cells: list[Cell]) -> list[Comparison]:
        by_id = {c.id: c for c in cells}
        firsts: dict[tuple[str, str | None], str] = {}  # (architecture, ablation) -> its headline variant
        out = []
        for u in units:
            if u.variant == "baseline":
                continue
            base_id = cell_id(u.task, u.arch, "baseline", u.seed)
            cell, base = by_id[u.id], by_id[base_id]
            if cell.status != "ok" or base.status != "ok":
                continue
            full, abl, chance = (self.outcome(i, key, cell.task) for i, key in
                                 ((base_id, "stats"), (u.id, "stats"), (base_id, "chance_stats")))
            w = shared_weights(full.n, self.cfg.bootstrap)
            d = float(dependence(abl.score, full.score, full.chance_score))
            boot = dependence(abl.bootstrap(w), full.bootstrap(w), full.bootstrap(w, "balanced_chance"))
            if (u.arch, u.ablation) not in firsts and u.ablation:
                firsts[u.arch, u.ablation] = next(iter(self.ablations[u.ablation].variants(self.flow(u.arch))))
            first = firsts.get((u.arch, u.ablation))
            out.append(Comparison(ablation=u.ablation or "?", task=u.task, architecture=u.arch, headline=u.variant == first,
                                  variant=u.variant, seed=u.seed, primary_full=round(full.primary, 6),
                                  primary_ablated=round(abl.primary, 6), primary_chance=round(chance.primary, 6),
                                  score_full=round(full.score, 6), score_ablated=round(abl.score, 6),
                                  score_chance=round(full.chance_score, 6), dependence=Interval(**_interval(d, boot))))
            atomic_write(self.run_dir.dependence_boot(u.id), lambda f, b=boot: np.save(f, b), "wb")
        return out

    def outcome(self, unit_id: str, key: str, task_alias: str) -> Outcome:
        return Outcome(self.run_dir.load_arrays(unit_id)[key], self.task_info(task_alias))

    def task_info(self, alias: str) -> TaskInfo:
        return self.task(alias).info


def declared(name: str, model: type, value: Any, what: str) -> dict:
    """``value`` as the ablation's declared pydantic type dumps it; one line naming the ablation if not."""
    from pydantic import ValidationError

    try:
        return model.model_validate(value).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "value"
        raise BenchError(f"ablation {name}: {what} does not match its declared {model.__name__} ({where}: "
                         f"{err['msg']}); return that type from run()") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (worker_error(str(exc)) or f"{type(exc).__name__}: {text[0] if text else ''}")[:300]


def _interval(estimate, boot) -> dict:
    if estimate is None or boot is None or not np.isfinite(estimate):
        return {"estimate": None if estimate is None or not np.isfinite(estimate) else round(float(estimate), 6),
                "low": None, "high": None}
    b = np.asarray(boot, dtype=float)
    b = b[np.isfinite(b)]
    if not len(b):
        return {"estimate": round(float(estimate), 6), "low": None, "high": None}
    lo, hi = np.percentile(b, [2.5, 97.5])
    return {"estimate": round(float(estimate), 6), "low": round(float(lo), 6), "high": round(float(hi), 6)}
