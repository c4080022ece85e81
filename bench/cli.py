"""Command line: one class per subcommand (run, validate, list, ...), each with worked examples.

User errors exit with status 2 and one line naming the file/key and the fix; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from bench import api, console
from bench.cell import writer
from bench.compare import compare
from bench.compare import render as render_comparison
from bench.config import load_config
from bench.describe import describe as describe_entry
from bench.describe import find, n_params, natural_role, signature_line
from bench.errors import BenchError, did_you_mean, first_line
from bench.failures import translate
from bench.leaderboard import build, write_or_print
from bench.leaderboard import render as render_leaderboard
from bench.params import validate_params
from bench.perf import run_benchmarks
from bench.plan import Plan, resolve_device
from bench.provenance import device_name
from bench.registry import ARCHITECTURES, REGISTRIES, TASKS, load_plugin
from bench.report import run_summary, sizing_section
from bench.reports_index import refresh
from bench.results import load_results
from bench.seed_profile import profile_seed
from bench.seed_profile import render as render_profile


class Command:
    name: str = ""
    help: str = ""
    examples: str = ""
    paths: tuple[str, ...] = ()  # the arguments that are paths: anchored before any plugin is imported
    interrupted: str = "finished cells are kept; run the same command again to resume"  # said after Ctrl-C

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def __call__(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


class Run(Command):
    name = "run"
    help = "train, evaluate and ablate what a study config asks; write a run folder"
    paths = ("config", "out")
    examples = """examples:
  python -m bench run configs/quickstart.yaml
  python -m bench run configs/resnet_cifar10.yaml --set train.epochs=2 --set seeds=[0,1]
  python -m bench run configs/unet_voc.yaml --out reports/runs/voc-try --restart
output: <out>/config.resolved.yaml, results.json, report.md and figures
(default <out>: reports/runs/<config-stem>-<hash of the resolved config>).
exit status: 0 when the study finished, also if some cells failed (diverged): a sweep keeps the
others' results, results.json/report.md record each failure and stderr says how many; 2 for a user
error, a plugin's failure or a data error, in one line (--debug: the traceback): found before the run
starts, nothing is written; found mid-run (a damaged image, a plugin that raises), the finished cells
are kept and the line says so. The same command resumes an interrupted run, --restart starts over."""

    def add_arguments(self, p):
        p.add_argument("config", type=Path, help="study YAML file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override a config value (YAML syntax), repeatable")
        p.add_argument("--out", help="run folder (default under reports/runs/)")  # a str: '' stays '' (refused)
        p.add_argument("--restart", action="store_true", help="discard finished cells in the run folder")
        p.add_argument("--quiet", action="store_true", help="no progress display")
        p.add_argument("--executor", choices=["local", "processes", "ray", "slurm"],
                       help="where cells run (default: the config's executor.kind, else local)")
        p.add_argument("--workers", type=int, metavar="N", help="processes: pool size; ray: CPUs of a local instance")
        p.add_argument("--address", help="ray: the cluster to join (e.g. auto); none starts a local instance")
        p.add_argument("--log", choices=["tensorboard", "mlflow"],
                       help="experiment tracking: each cell's loss and lr per step and final metrics, offline in "
                            "<out>/logs/: TensorBoard event files, or a local MLflow file store (<out>/logs/mlflow, "
                            "a run per cell); needs the extra: pip install 'identity-bench[tensorboard]' or '[mlflow]'")

    def __call__(self, args):
        root = api.run_folder(args.config, out=args.out, restart=args.restart, executor=args.executor,
                              workers=args.workers, address=args.address, plugins=tuple(args.plugin),
                              progress=not args.quiet, set_options=args.overrides, log=args.log)
        if not writer():  # under torchrun, ranks but 0 write nothing
            return 0
        results = api.load(root)
        print(run_summary(results, root))
        failed = sum(c.status != "ok" for c in results.cells)
        if failed:  # the other cells' results are kept and reported; the failure is recorded, not fatal
            print(f"warning: {failed} cell(s) failed (see report.md, 'Trained models'); the others finished",
                  file=sys.stderr)
        return 0


class Validate(Command):
    name = "validate"
    help = "check a config (schema, registered names, ablations vs identity flow) without running"
    paths = ("config",)
    examples = """examples:
  python -m bench validate configs/quickstart.yaml
  python -m bench validate configs/unet_voc.yaml --set train.lr=0.01
  python -m bench validate configs/quickstart.yaml --cells      # list the cells a run would train
checks: everything `run` checks before it writes anything (schema, names, data roots, nested task specs,
the verdict's tasks and pairs, the device); every number has a bound (bench/limits.py documents the
ceilings); a study whose cell count, model size or bootstrap memory is absurd is refused.
reports, without downloading anything: the device a run would use, and per task whether its data is
present, where it looks and what a run would download (and how big). Data that a run would download is
not an error: exit 0."""

    def add_arguments(self, p):
        p.add_argument("config", type=Path)
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
        p.add_argument("--cells", action="store_true", help="list the cells a run would train, in order")

    def __call__(self, args):
        plan = Plan.build(args.config, args.overrides, tuple(args.plugin))
        print(f"{args.config}: ok — {len(plan.cfg.tasks)} task(s), {len(plan.cfg.architectures)} "
              f"architecture(s), {len(plan.cfg.pairs())} pair(s), {len(plan.cfg.ablations)} ablation(s), "
              f"{len(plan.cfg.seeds)} seed(s), {len(plan.units)} cell(s)")
        print(f"  device: {device_line(plan.cfg.device)}")
        for alias, spec in plan.cfg.tasks.items():
            for i, line in enumerate(data_status(spec.name, spec.params)):
                print(f"  {'data ' + alias + ':' if i == 0 else '':<{len(alias) + 6}} {line}".rstrip())
        for note in plan.notes:
            print(f"  note: {note}")
        if args.cells:
            print(f"cells ({len(plan.units)}, in the order a local run trains them):")
            for unit in plan.units:
                via = f"  ({unit.ablation})" if unit.ablation else ""
                print(f"  {unit.id}{via}")
        return 0


def device_line(name: str) -> str:
    """The device a run would use here, and what ``auto`` fell back to."""
    device = resolve_device(name)
    if device.type == "cuda":
        return f"{device} ({device_name(device)})" + (" — device: auto found CUDA" if name == "auto" else "")
    if name == "auto":
        return "cpu — device: auto found no CUDA here, so a run computes on the CPU (a GPU study is slow there)"
    return str(device)


def data_status(task: str, params: dict) -> list[str]:
    """A task's data as ``validate`` reports it: its ``status`` hook (present, where it looks, what a run would
    download), else whether its ``root`` exists; nothing is read beyond listings, nothing is downloaded."""
    obj = TASKS.get(task)
    status = getattr(obj, "status", None)
    if callable(status):
        try:
            return [str(line) for line in status(**params)]
        except Exception as exc:  # a plugin's hook must not make validate fail: say it, carry on
            return [f"status hook failed ({first_line(exc)})"]
    root = params.get("root", inspect_default(obj, "root"))
    if isinstance(root, str | Path) and root:
        path = Path(os.path.abspath(Path(root).expanduser()))
        return [f"{'present at' if path.exists() else 'MISSING:'} {path}"]
    return []


def inspect_default(obj, name: str):
    try:
        param = inspect.signature(obj).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


class List(Command):
    name = "list"
    help = "show registered tasks, architectures and ablations (built-in and plugged-in)"
    examples = """examples:
  python -m bench list
  python -m bench list architectures
  python -m bench --plugin my_plugin.py list architectures"""

    def add_arguments(self, p):
        p.add_argument("kind", nargs="?", choices=sorted(REGISTRIES), help="one registry (default: all)")

    def __call__(self, args):
        for kind in [args.kind] if args.kind else ["tasks", "architectures", "ablations"]:
            reg = REGISTRIES[kind]
            entries = reg.entries()
            print(f"{kind} ({len(entries)}):")
            w = max([22, *(len(n) for n in [*(e.name for e in entries), *reg.failed])])
            for e in entries:
                print(f"  {e.name:<{w}} {describe(kind, e)}")
            for name, err in sorted(reg.failed.items()):
                print(f"  {name:<{w}} FAILED TO IMPORT: {err}")
        return 0


def describe(kind: str, entry) -> str:
    text = entry.description
    if kind == "architectures":
        try:
            size = f"{n_params(entry.obj) / 1e6:.2f}M params (defaults, 10 classes)"
        except Exception as exc:  # an optional dependency missing, weights unavailable, ...
            size = f"params n/a: {type(exc).__name__}"
        return f"{text} [{size}; {natural_role(entry.obj)}]"
    if kind == "ablations":
        return f"{text} [{getattr(entry.obj, 'phase', '?')} time]"
    return f"{text}\n{'':<26}params: {signature_line(entry.obj)}"


class Describe(Command):
    name = "describe"
    help = "everything about one task, architecture or ablation: parameters (type, default, bounds), docs, size"
    examples = """examples:
  python -m bench describe segmentation_folder
  python -m bench describe unet
  python -m bench --plugin my_net.py describe my_net"""

    def add_arguments(self, p):
        p.add_argument("name", help="a registered name (see `python -m bench list`)")

    def __call__(self, args):
        print("\n\n".join(describe_entry(kind, entry) for kind, entry in find(args.name)))
        return 0


class Check(Command):
    name = "check"
    help = "check one architecture (the conformance suite, bench.conformance) or one task (its data), with parameters"
    paths = ("config",)
    examples = """examples:
  python -m bench check cifar_resnet --set depth=8 --set width=4
  python -m bench check my_net --plugin my_net.py --set width=8
  python -m bench check tiny_resnet -- -x -v     # after --: extra pytest arguments
  python -m bench check voc2012 --set root=data --set train_subset=8
  python -m bench check voc_cls --config configs/unet_voc.yaml --set source.root=data   # a config's task alias
architecture: the same as python -m pytest --pyargs bench.conformance --bench-arch NAME --bench-params '{"width": 8}';
exit status pytest's (0: every check passed).
task: builds it as a run does and checks splits non-empty, labels within num_classes (or the ignore index),
masks the size of their images, class names / background / ignore index consistent, a classify_from_masks
twin's labels derived as documented; each failure one line naming the task and the fix, exit 2. The same
checks in pytest: python -m pytest --pyargs bench.conformance --bench-task '{"name": "voc2012", "root": "data"}'"""

    def add_arguments(self, p):
        p.add_argument("arch", metavar="NAME",
                       help="a registered architecture or task (built-in, installed or --plugin), or with --config "
                            "a task alias of that config")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="a factory parameter (YAML syntax), repeatable; default: the factory's defaults")
        p.add_argument("--config", type=Path, help="a study config whose task alias NAME is (with its parameters)")

    def __call__(self, args):
        params = {}
        for item in args.overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise BenchError(f"--set {item!r}: write KEY=VALUE, e.g. --set width=8")
            params[key.strip()] = yaml.safe_load(value)
        if args.config is not None:
            cfg = load_config(args.config)
            if args.arch not in cfg.tasks:
                raise BenchError(f"{args.config}: no task alias {args.arch!r}{did_you_mean(args.arch, cfg.tasks)}; "
                                 f"its tasks: {', '.join(cfg.tasks)}")
            spec = cfg.tasks[args.arch]
            merged = json.loads(json.dumps({"name": spec.name, **spec.params}))  # a deep copy
            for key, value in params.items():  # a dotted key sets a nested one: --set source.root=data
                *parents, last = key.split(".")
                node = merged
                for part in parents:
                    if not isinstance(node.get(part), dict):
                        raise BenchError(f"--set {key}: {part!r} is not a mapping of task {args.arch!r}; fix the key")
                    node = node[part]
                node[last] = value
            return check_task_data(args.arch, merged)
        if args.arch not in ARCHITECTURES.names() and args.arch in TASKS.names():
            return check_task_data(args.arch, {"name": args.arch, **params})
        import pytest  # a dev dependency: only `bench check` of an architecture needs it

        values = validate_params(ARCHITECTURES.get(args.arch), params, f"bench check {args.arch} --set")
        preflight = getattr(ARCHITECTURES.get(args.arch), "check", None)  # traced: the model built once, one line
        if callable(preflight):
            preflight(values, f"bench check {args.arch} --set")
        argv = ["-p", "no:cacheprovider", "--pyargs", "bench.conformance", "--bench-arch", args.arch]
        if args.overrides:
            argv += ["--bench-params", json.dumps(params)]
        return int(pytest.main([*argv, *args.passthrough]))


def check_task_data(label: str, spec: dict) -> int:
    """``bench check TASK``: the task built as a run builds it, then ``task_problems``; one line per failure."""
    from bench.conformance import build_task, one_torch_thread, task_problems
    from bench.data import cap_workers

    with one_torch_thread():
        task, params = build_task(spec, f"bench check {label} --set", label)
        cap_workers(task, label)  # workers above the cores: one note, as a run says it (no torch warning per loader)
        problems = task_problems(label, task, {"name": spec["name"], **params})
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 2
    info = task.info
    print(f"task {label} ({spec['name']}): ok — {info.kind}, {info.num_classes} classes, train {len(task.train)}, "
          f"test {len(task.test)} examples; labels, shapes and class metadata consistent")
    return 0


class Leaderboard(Command):
    name = "leaderboard"
    help = "one table across runs: metric and identity dependence per task x architecture x variant"
    paths = ("runs", "out")
    examples = """examples:
  python -m bench leaderboard reports/runs/*
  python -m bench leaderboard reports/runs/quickstart-1a2b3c4d reports/runs/camvid_cpu --format csv --out lb.csv
  python -m bench leaderboard reports/*/results.json --format html --out leaderboard.html
  python -m bench leaderboard runA runB --format latex --out table.tex     # booktabs, one column of a paper
  python -m bench leaderboard runA runB --format latex --wide               # a full-width table*
html: one self-contained file (no network): sortable, intervals, verdicts, links to each run's report."""

    def add_arguments(self, p):
        p.add_argument("runs", nargs="+", help="run folders (holding results.json)")
        p.add_argument("--format", choices=["md", "csv", "html", "latex"], default="md")
        p.add_argument("--out", type=Path, help="write to a file instead of stdout")
        p.add_argument("--wide", action="store_true",
                       help="latex: a full-width table* across both columns (default: fits one column)")

    def __call__(self, args):
        output_file(args.out, f"leaderboard.{args.format}")
        rows, ablations = build(args.runs)
        with writing(args.out):
            write_or_print(render_leaderboard(rows, ablations, args.format, args.out, args.wide), args.out)
        return 0


class Compare(Command):
    name = "compare"
    help = "compare two runs: configuration differences, then cell-by-cell deltas with significance"
    paths = ("run_a", "run_b", "out")
    examples = """examples:
  python -m bench compare reports/runs/quickstart-aaaa reports/runs/quickstart-bbbb
  python -m bench compare runA runB --format csv --out deltas.csv"""

    def add_arguments(self, p):
        p.add_argument("run_a", type=Path)
        p.add_argument("run_b", type=Path)
        p.add_argument("--format", choices=["md", "csv"], default="md")
        p.add_argument("--out", type=Path)

    def __call__(self, args):
        output_file(args.out, f"compare.{args.format}")
        text = render_comparison(compare(args.run_a, args.run_b), args.format)
        with writing(args.out):
            write_or_print(text, args.out)
        return 0


class Reports(Command):
    name = "reports"
    help = "regenerate the results table in reports/README.md from reports/*/results.json"
    paths = ("dir",)
    examples = """examples:
  python -m bench reports
  python -m bench reports --dir reports"""

    def add_arguments(self, p):
        p.add_argument("--dir", type=Path, default=Path("reports"))

    def __call__(self, args):
        with writing(args.dir / "README.md"):
            print(refresh(args.dir))
        return 0


class Power(Command):
    name = "power"
    help = "how many seeds each verdict row of a run needs, for a target half-width and for a target power"
    paths = ("run",)
    examples = """examples:
  python -m bench power reports/quickstart
  python -m bench power reports/camvid_cpu --halfwidth 0.15 --effect 0.2"""

    def add_arguments(self, p):
        p.add_argument("run", type=Path, help="a run folder (or its results.json)")
        p.add_argument("--halfwidth", type=positive, default=0.10, help="target interval half-width (default 0.10)")
        p.add_argument("--effect", type=positive, default=None,
                       help="effect for the 80%%-power column (default: each row's observed |median|)")

    def __call__(self, args):
        print(sizing_section(load_results(args.run), args.halfwidth, args.effect).strip())
        return 0


def positive(text: str) -> float:
    """A finite number above 0 (argparse turns the ValueError into a one-line usage error)."""
    value = float(text)
    if not (0 < value < float("inf")):
        raise ValueError(text)
    return value


def output_file(path: Path | None, example: str) -> None:
    """--out must name a file that can be created: not a folder, not under a file (checked before any work)."""
    if path is None:
        return
    if path.is_dir():
        raise BenchError(f"--out {path}: is a folder; give a file name, e.g. --out {path / example}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise BenchError(f"--out {path}: {parent} is a file, not a folder; choose another path")


def writable_file(path: Path | None) -> None:
    """--out checked before any work as the writer (bench.io) will check it at the end: not a link, not a device,
    FIFO or other non-file (a run folder's own files are refused by the writer)."""
    if path is not None and (path.is_symlink() or (path.exists() and not path.is_file())):
        raise BenchError(f"--out {path}: is {'a link' if path.is_symlink() else 'not a regular file'}; bench writes "
                         "only regular files it can replace; give another path")


@contextlib.contextmanager
def writing(path: Path | None):
    """An output that cannot be written (permissions, a full disk) is a one-line error naming it."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and path is None:
            raise
        raise BenchError(f"{exc.filename or path}: cannot write ({exc.strerror or exc}); choose another path "
                         "or fix its permissions") from exc


class Profile(Command):
    name = "profile"
    help = "where one seed of a study spends its time: each phase's seconds, and its share by kind of torch operator"
    paths = ("config", "out")
    interrupted = "nothing was kept (bench profile works in temporary folders it deletes)"
    examples = """examples:
  python -m bench profile configs/quickstart.yaml
  python -m bench profile configs/camvid_cpu.yaml --seed 3 --threads 2 --out profile.md
runs the seed twice in this process (unprofiled for the seconds, under torch.profiler for the shares), each time in a
temporary folder it deletes; prints the table (--out: writes it). Minutes: twice the seed's cells, plus reading the
profile."""

    def add_arguments(self, p):
        p.add_argument("config", type=Path, help="study YAML file")
        p.add_argument("--seed", type=int, default=None,
                       help="the seed to run, listed in the config or not (default: the config's first)")
        p.add_argument("--threads", type=int, default=1,
                       help="torch threads (default 1: what each of a 2-worker pool's cells gets on 2 cores)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override a config value (YAML syntax), repeatable")
        p.add_argument("--out", type=Path, default=None, help="write the Markdown table to this file")

    def __call__(self, args):
        if args.threads < 1:
            raise BenchError(f"--threads {args.threads}: give 1 or more")
        if args.seed is not None and args.seed < 0:
            raise BenchError(f"--seed {args.seed}: give a seed of 0 or more")
        output_file(args.out, "profile.md")
        writable_file(args.out)  # minutes of profiling must not end in a refusal
        found = profile_seed(args.config, seed=args.seed, threads=args.threads, set_options=args.overrides,
                             plugins=args.plugin)
        with writing(args.out):
            write_or_print(render_profile(found), args.out)
        return 0


class Bench(Command):
    name = "bench"
    help = "run the speed benchmarks (pytest-benchmark) and print their side-by-side ratios"
    paths = ("out",)
    examples = """examples:
  python -m bench bench
  python -m bench bench -k sweep          # one benchmark
results: reports/perf/latest.md (the README table) and latest.json"""

    def add_arguments(self, p):
        p.add_argument("-k", dest="select", help="pytest -k expression selecting benchmarks")
        p.add_argument("--out", type=Path, default=Path("reports/perf"))

    def __call__(self, args):
        api.check_out(args.out)  # a folder bench can write: checked before minutes of benchmarks, not after
        path = run_benchmarks(args.out, args.select)
        print(path.read_text())
        return 0


COMMANDS: list[type[Command]] = [Run, Validate, List, Describe, Check, Leaderboard, Compare, Reports, Power, Profile,
                                 Bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="bench: identity-flow ablations (Veit et al. 2016) on classification and dense prediction.",
        epilog="examples:\n  python -m bench run configs/quickstart.yaml\n  python -m bench validate configs/unet_voc.yaml\n"
               "  python -m bench list architectures\n  python -m bench leaderboard reports/runs/* --format md")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a plugin module or .py file first, repeatable")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cls in COMMANDS:
        cmd = cls()
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, epilog=cmd.examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(p)
        p.set_defaults(handler=cmd)
    return parser


def init_distributed() -> None:
    """Under ``torchrun --nproc_per_node=N``: join the process group (NCCL on CUDA, gloo on CPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def leave_distributed() -> None:
    """Destroy the process group before the interpreter exits: a gloo group left to interpreter shutdown can abort
    the process ("terminate called without an active exception") after its work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()


def hoist_plugins(argv: list[str]) -> list[str]:
    """Move every ``--plugin X`` / ``--plugin=X`` to the front, so it may follow the subcommand too."""
    plugins, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--plugin" and i + 1 < len(argv):
            plugins += argv[i:i + 2]
            i += 2
            continue
        (plugins if argv[i].startswith("--plugin=") else rest).append(argv[i])
        i += 1
    return plugins + rest


@contextmanager
def on_sigterm() -> Iterator[None]:
    """SIGTERM (Slurm at its time limit, Kubernetes, `kill`) ends a run like Ctrl-C: cells written so
    far are kept, the lock is released, and the exit is explained (status 143 = 128 + SIGTERM). The
    previous handler is restored, so calling ``main`` from Python leaves the process as it was."""
    def stop(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where KeyboardInterrupt is, so the same clean-up runs."""


def absolute(value):
    """A path argument (or a list of them) anchored to the folder bench started in, type kept (str or Path)."""
    if value is None or value == "":  # '' (an unset shell variable) is refused by name, not read as "here"
        return value
    if isinstance(value, list):
        return [absolute(v) for v in value]
    return type(value)(os.path.abspath(value))


def anchor_paths(args: argparse.Namespace) -> None:
    """Make the command's path arguments absolute before any plugin is imported, so a plugin's os.chdir at
    import cannot move a relative --out, config or run folder; plugin files too, for the next plugin and the
    worker processes. A plugin file that does not exist is kept as typed, for its error message."""
    for name in args.handler.paths:
        setattr(args, name, absolute(getattr(args, name)))
    args.plugin = [os.path.abspath(p) if p.endswith(".py") and os.path.isfile(p) else p for p in args.plugin]


def main(argv: list[str] | None = None) -> int:
    """The CLI. Standard output and error work on any terminal (bench.console): typography an ASCII or Latin-1
    stream cannot encode is spelled in ASCII; a reader that left (EPIPE) ends bench silently, a full disk or
    a closed stream in one line, never a traceback (nor Python's 'Exception ignored' at exit)."""
    with console.ascii_fallback(sys.stdout, sys.stderr), console.guard():
        try:
            try:
                return parse_and_run(argv)
            finally:
                console.flush()  # buffered output fails here, where it is caught, not at interpreter exit
        except console.OutputError as exc:
            return console.output_failed(exc)


def parse_and_run(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = hoist_plugins(sys.argv[1:] if argv is None else list(argv))
    passthrough: list[str] = []
    if "--" in argv:  # `bench check NAME -- -x -v`: what follows is for pytest
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.passthrough = passthrough
    anchor_paths(args)
    with on_sigterm():
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        for plugin in args.plugin:
            load_plugin(plugin)
        init_distributed()
        try:
            return args.handler(args)
        finally:
            leave_distributed()
    except console.OutputError:  # stdout/stderr cannot be written: main ends quietly, whatever was running
        raise
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}: {args.handler.interrupted}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not pass for success
        err = translate(exc)
        if err is None:  # a bug in bench: keep the traceback
            raise
        if args.debug:
            traceback.print_exception(exc)
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever a plugin raised
        return 2


if __name__ == "__main__":
    sys.exit(main())
