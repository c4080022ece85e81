"""Run a study: train every (task, architecture, variant, seed) cell, run its ablations, write results.

Each finished cell is written atomically to ``cells/<id>.json`` (+ per-example statistics in
``cells/<id>.npz``), so a re-run with the same config and folder skips finished cells and resumes an
interrupted training from its last epoch checkpoint. ``results.json`` and ``report.md`` are assembled
from the cell files at the end.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from bench.ablations.base import Ablation, AblationContext, dependence
from bench.config import SAFE_ALIAS, StudyConfig, config_hash
from bench.data import Task, TaskInfo
from bench.errors import BenchError
from bench.evaluate import predict_stats
from bench.flow import Edit, IdentityFlow, identity_flow, set_edits
from bench.io import atomic_write, save_npz, write_json, write_text
from bench.metrics import SCALE, Outcome, bootstrap_weights, chance_outcome, primary_metric
from bench.progress import StudyProgress
from bench.provenance import CELL_PROVENANCE, provenance
from bench.registry import ABLATIONS, ARCHITECTURES, TASKS
from bench.results import SCHEMA_VERSION, Cell, Comparison, Interval, Results
from bench.train import DivergedError, deterministic, train


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device: {name!r} requested but CUDA is not available here; use device: cpu or auto")
    return torch.device(name)


def build_model(resolved: dict, alias: str, info: TaskInfo) -> torch.nn.Module:
    spec = dict(resolved["architectures"][alias])
    return ARCHITECTURES.get(spec.pop("name"))(info, **spec)


def build_ablations(resolved: dict) -> dict[str, Ablation]:
    out = {}
    for spec in resolved["ablations"]:
        spec = dict(spec)
        name = spec.pop("name")
        out[name] = ABLATIONS.get(name)(**spec)
    return out


def default_run_dir(resolved: dict, config_path: Path) -> Path:
    return Path("reports") / "runs" / f"{config_path.stem}-{config_hash(resolved)}"


@dataclass
class Unit:
    task: str
    arch: str
    variant: str
    seed: int
    edits: dict[str, Edit]
    ablation: str | None = None  # the train-time ablation that defines this variant

    @property
    def id(self) -> str:
        return f"{self.task}__{self.arch}__{self.variant}__s{self.seed}"


class Study:
    def __init__(self, cfg: StudyConfig, resolved: dict, config_path: Path, out: Path | None = None,
                 restart: bool = False, show_progress: bool = True):
        self.cfg, self.resolved, self.config_path = cfg, resolved, Path(config_path)
        self.dir = Path(out) if out else default_run_dir(resolved, self.config_path)
        self.restart = restart
        self.device = resolve_device(cfg.device)
        self.ablations = build_ablations(resolved)
        self.show_progress = show_progress
        self._tasks: dict[str, Task] = {}
        self.timings: dict[str, float] = {}
        self.provenance: dict = {}  # taken when the run starts (a resumed run: when it resumed)
        # under torchrun every rank trains (DDP) and evaluates the full test set; rank 0 alone writes
        self.writer = not dist.is_initialized() or dist.get_rank() == 0

    # -- set-up ------------------------------------------------------------------------------
    def task(self, alias: str) -> Task:
        if alias not in self._tasks:
            spec = dict(self.resolved["tasks"][alias])
            t0 = time.perf_counter()
            try:
                self._tasks[alias] = TASKS.get(spec.pop("name"))(**spec)
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

    def prepare_dir(self) -> None:
        resolved_yaml = yaml.safe_dump(self.resolved, sort_keys=False)
        existing = self.dir / "config.resolved.yaml"
        if existing.exists() and not self.restart:
            old = existing.read_text()
            if old != resolved_yaml:
                try:
                    diff = _dict_diff(yaml.safe_load(old), self.resolved)
                except (yaml.YAMLError, AttributeError):
                    diff = "its config.resolved.yaml is unreadable"
                raise BenchError(f"{self.dir}: holds a run of a different config ({diff}); "
                                 "use --restart to start over or --out for a new folder")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.restart:
                for sub in ("cells", "checkpoints"):
                    shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / "cells").mkdir(exist_ok=True)
            for tmp in self.dir.rglob(".*.tmp"):  # an atomic write cut short by a kill; never read
                tmp.unlink(missing_ok=True)
            write_text(existing, resolved_yaml)
        except OSError as exc:
            raise BenchError(f"{self.dir}: cannot write the run folder ({exc.strerror}); choose another with --out") from None

    def units(self) -> list[Unit]:
        units = []
        for t, a in self.cfg.pairs():
            flow = self.flow(a)
            variants: dict[str, tuple[str | None, dict[str, Edit]]] = {"baseline": (None, {})}
            for name, abl in self.ablations.items():
                if abl.phase == "train" and abl.applicable(flow) is None:
                    variants.update({v: (name, e) for v, e in abl.variants(flow).items()})
            for v, (name, _) in variants.items():  # variant names become file names
                if not SAFE_ALIAS.match(v) or "__" in v:
                    raise BenchError(f"ablation {name}: variant name {v!r} is not a safe file name; rename it")
            for seed in self.cfg.seeds:
                units += [Unit(t, a, v, seed, e, n) for v, (n, e) in variants.items()]
        return units

    def flow(self, arch: str) -> IdentityFlow:
        return identity_flow(build_model(self.resolved, arch, TaskInfo("classification", 10)))

    # -- running -----------------------------------------------------------------------------
    def run(self) -> Path:
        with deterministic(compile=self.cfg.train.compile):
            return self._run()

    def _run(self) -> Path:
        t0 = time.perf_counter()
        self.provenance = provenance(self.device)  # the code that computes the cells, not what is checked out later
        for alias in dict.fromkeys(t for t, _ in self.cfg.pairs()):
            self.task(alias)  # missing or malformed data fails here, before anything is written
        for t, a in self.cfg.pairs():
            self.probe(t, a)
        units = self.units()
        if self.writer:
            self.prepare_dir()
        _barrier()
        todo = [u for u in units if not self._done(u)]
        _barrier()
        show = self.show_progress and self.writer
        with StudyProgress(len(units), len(units) - len(todo), enabled=show) as progress:
            for unit in todo:
                progress.start(unit.id)
                cell = self.run_unit(unit, progress)
                if self.writer:
                    write_json(self.dir / "cells" / f"{unit.id}.json", cell)
                progress.finish(unit.id, cell)
        self.timings["study"] = round(time.perf_counter() - t0, 3)
        _barrier()
        if not self.writer:
            return self.dir
        results = self.assemble(units)
        write_json(self.dir / "results.json", results.model_dump(mode="json", by_alias=True))
        from bench.report import write_report

        write_report(self.dir, results)
        return self.dir

    def _done(self, unit: Unit) -> bool:
        return (self.dir / "cells" / f"{unit.id}.json").exists() and (self.dir / "cells" / f"{unit.id}.npz").exists()

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
                      "computed_with": {k: self.provenance.get(k) for k in CELL_PROVENANCE}}
        ckpt = self.dir / "checkpoints" / f"{unit.id}.pt"
        t0 = time.perf_counter()
        try:
            cell["train"] = train(model, task, self.cfg.train, seed=unit.seed, device=self.device,
                                  checkpoint=ckpt, on_step=progress.step)
        except DivergedError as exc:
            cell.update(status="failed", error=f"diverged: {exc}")
            if self.writer:
                save_npz(self.dir / "cells" / f"{unit.id}.npz")
            return cell
        cell["timings"]["train_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        baseline = predict_stats(model, task.test, info, batch_size=self.cfg.train.eval_batch_size,
                                 device=self.device, amp=self.cfg.train.amp)
        chance = chance_outcome(task.train.targets(), task.test.targets(), info)
        cell["metrics"], cell["chance"] = baseline.metrics(), chance.metrics()
        cell["timings"]["eval_s"] = round(time.perf_counter() - t0, 3)
        weights = shared_weights(baseline.n, self.cfg.bootstrap)
        # the margin over chance on the dependence scale: the verdict's conditioning check reads it
        arrays = {"stats": baseline.stats, "chance_stats": chance.stats,
                  "boot__margin": baseline.bootstrap(weights) - chance.bootstrap(weights)}
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
                summary = type(abl).Summary.model_validate(out.summary).model_dump()  # the declared type
                ci = _interval(summary.get(abl.measure), out.summary_boot)
                cell["ablations"][name] = {"version": abl.version, "settings": abl.params.model_dump(),
                                           "records": out.records, "summary": summary, "summary_ci": ci,
                                           "wall_s": round(time.perf_counter() - t1, 3)}
                if out.summary_boot is not None:
                    arrays[f"boot__{name}"] = np.asarray(out.summary_boot)
        if self.writer:
            save_npz(self.dir / "cells" / f"{unit.id}.npz", **arrays)
        return cell

    # -- assembling --------------------------------------------------------------------------
    def assemble(self, units: list[Unit]) -> Results:
        cells = [Cell.model_validate(json.loads((self.dir / "cells" / f"{u.id}.json").read_text())) for u in units]
        comparisons = self.comparisons(units, cells)
        from bench.verdict import compute_verdicts

        declarations = {n: type(a).declaration() for n, a in self.ablations.items()}
        verdict, verdicts, interaction = compute_verdicts(self.resolved, cells, comparisons, self.dir, declarations)
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
        out = []
        for u in units:
            if u.variant == "baseline":
                continue
            base_id = Unit(u.task, u.arch, "baseline", u.seed, {}).id
            cell, base = by_id[u.id], by_id[base_id]
            if cell.status != "ok" or base.status != "ok":
                continue
            full, abl, chance = (self.outcome(i, key, cell.task) for i, key in
                                 ((base_id, "stats"), (u.id, "stats"), (base_id, "chance_stats")))
            w = shared_weights(full.n, self.cfg.bootstrap)
            d = float(dependence(abl.score, full.score, chance.score))
            boot = dependence(abl.bootstrap(w), full.bootstrap(w), chance.bootstrap(w))
            out.append(Comparison(ablation=u.ablation or "?", task=u.task, architecture=u.arch,
                                  variant=u.variant, seed=u.seed, primary_full=round(full.primary, 6),
                                  primary_ablated=round(abl.primary, 6), primary_chance=round(chance.primary, 6),
                                  score_full=round(full.score, 6), score_ablated=round(abl.score, 6),
                                  score_chance=round(chance.score, 6), dependence=Interval(**_interval(d, boot))))
            atomic_write(self.dir / "cells" / f"{u.id}.dependence_boot.npy", lambda f, b=boot: np.save(f, b), "wb")
        return out

    def outcome(self, unit_id: str, key: str, task_alias: str) -> Outcome:
        with np.load(self.dir / "cells" / f"{unit_id}.npz") as z:
            return Outcome(z[key], self.task_info(task_alias))

    def task_info(self, alias: str) -> TaskInfo:
        return self.task(alias).info


BOOTSTRAP_SEED = 1000


def shared_weights(n: int, replicates: int) -> np.ndarray:
    """Bootstrap resampling counts for a test set of n examples, the SAME for every seed and for tasks
    that share test images: the verdict averages seeds replicate by replicate, so a replicate must
    resample the same examples in every seed (the test set is shared; its sampling error is too)."""
    return bootstrap_weights(n, replicates, seed=BOOTSTRAP_SEED)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


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


def _dict_diff(old: dict, new: dict, prefix: str = "") -> str:
    diffs = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = _dict_diff(a, b, f"{prefix}{k}.")
            if sub:
                diffs.append(sub)
        elif a != b:
            diffs.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return "; ".join(diffs[:5])
