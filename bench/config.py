"""The study config: YAML (safe_load) -> a typed, documented schema (pydantic v2, unknown keys rejected).

A study names its tasks and architectures (aliases -> registered plugin + params), the matrix of
task x architecture pairs, the training recipe, the ablations, seeds and device. Plugin parameters
are validated against each plugin's own signature (``bench.params``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from bench import limits
from bench.errors import BenchError, did_you_mean
from bench.params import NO_BOOLS, validate_params
from bench.registry import ABLATIONS, ARCHITECTURES, SAFE_NAME, TASKS, load_plugin
from bench.sequential import MAX_LOOKS, look_sizes

SAFE_ALIAS = SAFE_NAME


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # epochs: .inf would never end
    _no_bools = NO_BOOLS  # `lr: true` is a mistake, not 1.0


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses duplicate keys: the second would silently win."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then overriding a key is legitimate
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):  # construct_mapping reports unhashable keys itself
            continue
        if (type(key), key) in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add((type(key), key))
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class TooLarge(yaml.YAMLError):
    """The document expands to more values than any study needs (e.g. nested anchors: "billion laughs")."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def expanded_size(node: yaml.Node, limit: int = limits.MAX_YAML_NODES) -> int:
    """Values the document holds once every alias (*name) is replaced by its anchor's content.

    Counted on the composed graph, each shared node once with memoisation, so the count itself is cheap
    however large the expansion; a node inside its own anchor (a cycle) counts once.
    """
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a cycle back to n counts once
        children = n.value if isinstance(n, yaml.CollectionNode) else []
        total = 1 + sum(size(c) for pair in children for c in (pair if isinstance(pair, tuple) else (pair,)))
        sizes[id(n)] = min(total, limit + 1)  # stop growing once over: the answer is only "too large"
        return sizes[id(n)]

    return size(node)


def safe_load(text: str) -> Any:
    """Plain YAML only (no Python tags), duplicate keys refused, expansion through aliases bounded."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > limits.MAX_YAML_NODES:
            raise TooLarge(f"expands to over {limits.MAX_YAML_NODES:,} values through its anchors and aliases "
                           "(*name); a study config needs far fewer: write the values out or reuse fewer aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


class PluginSpec(BaseModel):
    """``{name: <registered name>, <param>: <value>, ...}``; params are checked against the plugin."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(Strict):
    epochs: float = Field(10, gt=0, le=limits.MAX_EPOCHS, description="Training length in epochs (fractions allowed).")
    batch_size: int = Field(128, ge=1, le=limits.MAX_BATCH)
    eval_batch_size: int = Field(500, ge=1, le=limits.MAX_BATCH)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0, le=limits.MAX_LR)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0, le=1)
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    milestones: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        [0.5, 0.75], max_length=100, description="multistep: fractions of training at which lr *= gamma.")
    gamma: float = Field(0.1, gt=0, le=10)
    warmup_epochs: float = Field(0.0, ge=0, le=limits.MAX_EPOCHS,
                                 description="Linear warm-up from lr/10 (He et al. ResNet-110 used ~1).")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class's loss by N / (C * n_c) over the training labels, so an "
        "imbalanced label cannot be fitted by predicting its majority class (which scores chance on balanced "
        "accuracy, the scale D is measured on).")
    class_weight_cap: float | None = Field(
        None, gt=1, description="With balanced weights: no class weighs more than this many times the lightest "
        "one. Why: a class with a handful of training examples (CamVid's twin: 1 car image of 367) would get a "
        "weight in the tens and dominate every batch it appears in.")
    amp: Literal["off", "auto", "bf16", "fp16"] = Field(
        "off", description="Precision of the forward passes (bench.precision). auto (recommended): bf16 where the "
        "device computes it natively (CUDA with bf16; a CPU with AMX or AVX-512-BF16), fp32 elsewhere. bf16: "
        "autocast on CUDA and CPU (emulated, slow, without those flags); fp16: CUDA only; off: fp32. Training, "
        "evaluation and ablations share it; loss, metrics and statistics stay fp32/fp64.")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the model (GPU).")
    max_steps_per_epoch: int | None = Field(None, ge=1, le=limits.MAX_STEPS, description="Cap for smoke tests.")

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        return "off" if v is False else v  # YAML 1.1 reads a bare `off` as false

    @model_validator(mode="after")
    def _cap_needs_weights(self) -> TrainConfig:
        if self.class_weight_cap is not None and self.class_weights == "none":
            raise ValueError("class_weight_cap caps balanced class weights, but class_weights is none; set "
                             "class_weights: balanced or remove the cap")
        return self


class VerdictConfig(Strict):
    label: str | None = Field(None, description="Name of this pair when `verdict:` lists several (e.g. the evidence "
                              "scale: coarse, fine); default: the dense task's alias.")
    dense: str = Field(description="Alias of the dense-prediction task (e.g. segmentation).")
    global_: str = Field(alias="global", description="Alias of its global-prediction twin (classification).")
    ablation: str = Field("skip_removal", description="Headline ablation (pre-specified): one that removes the "
                          "identity path and reports dependence.")
    architecture: str | None = Field(None, description="Headline architecture; default: first natural for dense.")
    alpha: float = Field(0.05, gt=0, le=0.2, description="Error rate of each call (headline) / family (Holm).")
    min_seeds: int = Field(10, ge=3, le=1000, description="Fewer seeds than this: a row is 'underpowered', never "
                           "supported/contradicted (power is small below 10; docs/protocols.md). Below 6 seeds no "
                           "distribution-free 95% interval exists, so such a row is underpowered whatever this says.")
    stop: Literal["decided", "halfwidth", "interaction"] = Field(
        "decided", description="With seed rounds (`seeds: {start, step, max}`): stop when every pair's headline is "
        "supported or contradicted (each look at Pocock's level), when its interval is narrower than `halfwidth` "
        "(each look at alpha), or — with exactly two pairs on one headline ablation — when their interaction is "
        "decided (each look at Pocock's level).")
    halfwidth: float | None = Field(None, gt=0, lt=10, description="stop: halfwidth: the target interval half-width.")
    max_train_loss: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        {}, description="Blind exclusion of seeds that did not converge, fixed before results: {task alias: loss}; a "
        "seed whose baseline's final training loss on that task is above it is left out of every row of the pair "
        "(listed as excluded_seeds). It reads the baseline alone, on training data: never the ablation's effect.")
    exclusion_loss: Literal["final", "last_epoch"] = Field(
        "final", description="Which training loss `max_train_loss` reads: final — the last batch's (every plan "
        "recorded before this option); last_epoch — the mean over the last epoch's worth of batches (train.last_epoch_loss), "
        "which one noisy batch cannot push over the limit (a joint network's global head: docs/protocols.md, "
        "'Stable twins').")
    min_margin: float = Field(0.1, ge=0, lt=1, description="Conditioning: each baseline's mean margin over chance "
                              "on the scale (D's denominator) must exceed this (interval lower bound), or the row "
                              "is ill-conditioned.")
    scale: Literal["balanced_accuracy", "recognition"] = Field(
        "balanced_accuracy", description="The scale D is read on, for every ablation of the study (one per study): "
        "recognition — balanced accuracy over the K object classes (chance 1/K) on object pixels/images, the "
        "background logit left out, so the same evidence loss reads the same D on a dense and a global task "
        "(recommended; docs/protocols.md, 'The dependence scale'); balanced_accuracy — over all classes, background "
        "included: the scale of every study before bench 0.3.2, and what a recorded plan without this key read.")

    @model_serializer(mode="wrap")
    def _omit_default_exclusion_loss(self, handler: SerializerFunctionWrapHandler) -> dict:
        """``exclusion_loss`` is written only when it is not the final loss: every recorded plan before it existed
        resolves, and re-assembles, to the same config."""
        out = handler(self)
        if isinstance(out, dict) and out.get("exclusion_loss") == "final":
            out.pop("exclusion_loss")
        return out

    @model_validator(mode="after")
    def _stop_has_its_width(self) -> VerdictConfig:
        if self.stop == "halfwidth" and self.halfwidth is None:
            raise ValueError("stop: halfwidth needs halfwidth: the target interval half-width (e.g. 0.1)")
        return self


class SeedRounds(Strict):
    """Seeds until decided: look at the headline after ``start`` seeds, then every ``step`` more, up to all of
    ``seeds`` (bench.sequential); ``verdict.stop`` says when to stop."""

    start: int = Field(ge=2, le=limits.MAX_SEEDS, description="Seeds at the first look (6 or more to be able to decide).")
    step: int = Field(ge=1, le=limits.MAX_SEEDS, description="Seeds added before each further look.")


class SlurmConfig(Strict):
    """Where each cell runs on a Slurm cluster (submitit); the run folder must be on a shared filesystem."""

    partition: str | None = Field(None, description="Slurm partition; None: the cluster's default.")
    gpus_per_task: int = Field(0, ge=0, le=16, description="GPUs each cell gets (one cell = one task).")
    cpus_per_task: int = Field(4, ge=1, le=256, description="CPUs each cell gets; also its torch threads.")
    mem_gb: float | None = Field(None, gt=0, le=4096, description="Memory per cell; None: the cluster default.")
    time_limit_min: int = Field(60, ge=1, le=60 * 24 * 14, description="Wall limit per cell; a killed cell resumes from its checkpoint.")
    array_parallelism: int = Field(16, ge=1, le=10_000, description="Cells of the job array running at once.")
    additional: dict[str, str | int | float | bool] = Field({}, description="Extra sbatch options, e.g. {account: x, qos: y}.")
    cluster: Literal["slurm", "local", "debug"] = Field("slurm", description="local: the same pickled jobs as local processes (no cluster; tests).")


class RayConfig(Strict):
    """Each cell a Ray task with this request; address None starts a local Ray instance."""

    address: str | None = Field(None, description="Existing cluster to join, e.g. 'auto' or 'ray://head:10001'.")
    cpus_per_cell: float = Field(1, gt=0, le=256, description="CPUs each cell reserves; also its torch threads.")
    gpus_per_cell: float = Field(0, ge=0, le=16, description="GPUs each cell reserves (fractions share a GPU).")


class ExecutorConfig(Strict):
    """How cells are run; never part of the results (a study may start locally and finish on Slurm)."""

    kind: Literal["local", "processes", "ray", "slurm"] = Field("local", description="CLI --executor wins.")
    workers: int | None = Field(None, ge=1, le=4096, description="processes: pool size (default: CPUs); ray: local CPUs.")
    ray: RayConfig = RayConfig()
    slurm: SlurmConfig = SlurmConfig()


class LossWeights(Strict):
    """The joint training loss of a ``multi_head`` network: ``dense`` · CE(dense head) + ``global`` · CE(global head)."""

    dense: float = Field(1.0, gt=0, le=1000, description="Weight of the dense head's loss (its task's class_weights "
                         "apply inside it).")
    global_: float = Field(1.0, alias="global", gt=0, le=1000, description="Weight of the global head's loss.")


class MultiHeadConfig(Strict):
    """Both heads in one network: each listed architecture is trained once per (variant, seed) on the dense and the
    global labels of the same images, and each of its two cells evaluates that network through its own head
    (docs/protocols.md, 'Both heads in one network')."""

    architectures: list[str] = Field(min_length=1, max_length=limits.MAX_CELLS, description="Architecture aliases "
                                     "trained jointly; each must be in the matrix with both tasks, and with no other.")
    dense: str = Field(description="Alias of the dense task (segmentation): the dense head's labels.")
    global_: str = Field(alias="global", description="Alias of the global task (classification) on the same images: "
                         "the global head's labels.")
    loss_weights: LossWeights = Field(LossWeights(), description="Weights of the two heads' losses in the joint loss.")

    @field_validator("architectures")
    @classmethod
    def _unique_archs(cls, v: list[str]) -> list[str]:
        dup = next((a for i, a in enumerate(v) if a in v[:i]), None)
        if dup is not None:
            raise ValueError(f"{dup!r} is listed twice; remove the repeat")
        return v


class StudyConfig(Strict):
    name: str | None = Field(None, max_length=limits.MAX_STUDY_NAME, description="Study name; default: the config file's stem.")
    seeds: list[Annotated[int, Field(ge=0, lt=2**31)]] = Field([0], min_length=1, max_length=limits.MAX_SEEDS,
                                                               description="A list, or {start, step, max} (exactly "
                                                               "those keys): seeds 0..max-1 in rounds until decided "
                                                               "(`rounds`).")
    rounds: SeedRounds | None = Field(None, description="Seed rounds (bench.sequential); set by `seeds: {start, step, "
                                      "max}`, or here with `seeds` listing every seed the study may use.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    tasks: dict[str, PluginSpec] = Field(min_length=1)
    architectures: dict[str, PluginSpec] = Field(min_length=1)
    matrix: Literal["all"] | list[tuple[str, str]] = Field("all", description="Pairs [task, architecture].")
    multi_head: MultiHeadConfig | list[MultiHeadConfig] | None = Field(
        None, description="Architectures trained as one network with a dense and a global head (a block, or a list: "
        "one per task pair); the others are trained as separate networks per task. Absent: every network is separate.")
    train: TrainConfig = TrainConfig()
    ablations: list[PluginSpec] = []
    verdict: VerdictConfig | list[VerdictConfig] | None = Field(
        None, description="One dense/global pair, or a list of pairs (one verdict each; with exactly two pairs on the "
        "same headline, their interaction: does D_dense − D_global differ between them?).")
    headline_only: bool = Field(False, description="Train and evaluate only the cells the verdict's pre-specified "
                                "headline needs: its tasks, its architecture, its ablation (a train-time one: the "
                                "baseline and its headline variant). The recorded config is the narrowed study.")
    bootstrap: int = Field(1000, ge=100, le=limits.MAX_BOOTSTRAP,
                           description="Test-set bootstrap replicates for confidence intervals.")
    plugins: list[str] = Field([], description="Extra plugin modules or .py files to import.")
    executor: ExecutorConfig = Field(ExecutorConfig(), description="Where cells run (not part of the results).")

    @model_validator(mode="before")
    @classmethod
    def _seed_rounds(cls, data: Any) -> Any:
        """``seeds: {start, step, max}`` is seeds 0..max-1 looked at in rounds: the list and ``rounds``."""
        if isinstance(data, dict) and isinstance(data.get("seeds"), dict):
            spec = dict(data["seeds"])
            unknown = sorted(str(k) for k in set(spec) - {"start", "step", "max"})  # YAML keys may be numbers
            top = spec.get("max")
            if unknown or not isinstance(top, int) or isinstance(top, bool):
                return data  # the list field names the problem: "seeds: Input should be a valid list"
            data = {**data, "seeds": list(range(max(top, 0))), "rounds": {k: v for k, v in spec.items() if k != "max"}}
        return data

    @field_validator("rounds")
    @classmethod
    def _rounds_fit(cls, rounds: SeedRounds | None, info: Any) -> SeedRounds | None:
        seeds = info.data.get("seeds")
        if rounds is None or not seeds:
            return rounds
        if rounds.start > len(seeds):
            raise ValueError(f"start {rounds.start} is more than the {len(seeds)} seeds listed")
        looks = len(look_sizes(len(seeds), rounds.start, rounds.step))
        if looks > MAX_LOOKS:
            raise ValueError(f"{looks} looks, over the {MAX_LOOKS} the stopping rule is set for; use a larger step")
        return rounds

    @field_validator("tasks", "architectures")
    @classmethod
    def _safe_aliases(cls, v: dict) -> dict:
        for alias in v:  # aliases name files in the run folder: no separators, no traversal
            if not SAFE_ALIAS.match(alias) or "__" in alias:
                raise ValueError(f"alias {alias!r} must be letters, digits, '_', '-', '.' (no '__', no path); rename it")
            if len(alias) > limits.MAX_NAME:  # with the others it makes a file name, which has a length limit
                raise ValueError(f"alias {alias[:20]!r}... is {len(alias)} characters, over the limit of "
                                 f"{limits.MAX_NAME} (aliases name files); shorten it")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("seeds", "matrix")
    @classmethod
    def _unique(cls, v: Any) -> Any:
        if v == []:  # `matrix: []` would run nothing and call it a success
            raise ValueError("is empty; list [task, architecture] pairs, or write all")
        if isinstance(v, list):  # a repeated seed or pair would be one cell id written twice
            dup = next((x for i, x in enumerate(v) if x in v[:i]), None)
            if dup is not None:
                raise ValueError(f"{list(dup) if isinstance(dup, tuple) else dup!r} is listed twice; remove the repeat")
        return v

    def resolved(self) -> dict[str, Any]:
        """The config as ``config.resolved.yaml`` and results.json hold it: a view of this object, whose
        plugin defaults ``load_config`` filled in (how cells run, ``executor``, is not part of it)."""
        # a study without multi_head records no such key: its resolved config (and hash) is what it was before
        return self.model_dump(by_alias=True, exclude={"executor", *(["multi_head"] if self.multi_head is None else [])})

    def multi_heads(self) -> list[MultiHeadConfig]:
        """The multi_head blocks: none, one, or the list, in config order."""
        return self.multi_head if isinstance(self.multi_head, list) else [] if self.multi_head is None else [self.multi_head]

    def joint_of(self, arch: str) -> MultiHeadConfig | None:
        """The multi_head block that trains ``arch`` as one network with both heads; None: separate networks."""
        return next((m for m in self.multi_heads() if arch in m.architectures), None)

    def verdict_pairs(self) -> list[VerdictConfig]:
        """The verdict pairs: none, one, or the list, in config order."""
        return self.verdict if isinstance(self.verdict, list) else [] if self.verdict is None else [self.verdict]

    @property
    def scale(self) -> str:
        """The study's dependence scale (``VerdictConfig.scale``; every pair shares it): what cells compute
        test-time D on, and the verdict reads. A study without a verdict reads all classes."""
        pairs = self.verdict_pairs()
        return pairs[0].scale if pairs else "balanced_accuracy"

    def pairs(self) -> list[tuple[str, str]]:
        if self.matrix == "all":
            return [(t, a) for t in self.tasks for a in self.architectures]
        return [tuple(p) for p in self.matrix]  # type: ignore[misc]


def set_path(data: dict, dotted: str, value: Any) -> None:
    """--set train.lr=0.05: walk/create dicts; list items by index (ablations.0.k=3)."""
    keys = dotted.split(".")
    node: Any = data
    for depth, k in enumerate(keys):
        here, last = ".".join(keys[:depth]), depth == len(keys) - 1
        if isinstance(node, list):
            if not (k.isdigit() and int(k) < len(node)):
                raise BenchError(f"--set {dotted}: {here} is a list of {len(node)} item(s); "
                                 f"index it with 0..{len(node) - 1}" if node else f"--set {dotted}: {here} is empty")
            k = int(k)  # type: ignore[assignment]
        elif isinstance(node, dict):
            if not last and node.get(k) is None:  # `train:` with no value reads as None
                node[k] = {}
        else:
            raise BenchError(f"--set {dotted}: {here} is {node!r}, not a mapping or a list; set {here}=... instead")
        if last:
            node[k] = value
        else:
            node = node[k]


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--set {item!r}: expected key.path=value, e.g. --set train.epochs=2")
        try:
            value = safe_load(raw)
        except yaml.YAMLError as exc:
            raise BenchError(f"--set {item!r}: the value {yaml_problem(exc)}") from None
        out.append((key, value))
    return out


def yaml_problem(exc: yaml.YAMLError) -> str:
    """'is not valid YAML (...); fix it', or what is wrong with a tag or a repeated key and the fix."""
    problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
    if isinstance(exc, TooLarge):
        return problem
    tag = re.search(r"constructor for the tag '([^']*)'", problem)
    if tag:
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"has tag {name}: configs are plain YAML, Python objects are not allowed; remove the tag"
    if problem.startswith("duplicate key"):
        return f"has a {problem} (the second would silently win); keep one"
    return f"is not valid YAML ({problem}); fix it"


def load_config(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """Parse, apply --set overrides, validate schema and plugin params: the config with its name and every
    plugin's defaults filled in (``StudyConfig.resolved()`` is what the run folder records)."""
    path = Path(path)
    if not path.exists() or path.is_dir():
        raise BenchError(f"{path}: no such config file; see configs/ for examples")
    if path.is_file() and path.stat().st_size > limits.MAX_CONFIG_BYTES:
        raise BenchError(f"{path}: is {path.stat().st_size:,} bytes, over the {limits.MAX_CONFIG_BYTES:,} a study "
                         "config may be; is this the right file?")
    data = read_bounded(path)  # a file, or a pipe: `cat study.yaml | bench run /dev/stdin`
    if len(data) > limits.MAX_CONFIG_BYTES:
        raise BenchError(f"{path}: is over the {limits.MAX_CONFIG_BYTES:,} bytes a study config may be; is this the "
                         "right file?")
    try:
        raw = safe_load(data.decode("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise BenchError(f"{path}:{where} {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except RecursionError:
        raise BenchError(f"{path}: is nested too deeply to be a study config; flatten it") from None
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: top level must be a mapping with tasks, architectures, ...")
    for key, value in parse_overrides(list(overrides)):
        set_path(raw, key, value)
    try:
        cfg = StudyConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise BenchError(f"{path}: {schema_error(exc, raw)}".replace("\n", "\\n")) from None
    for plugin in cfg.plugins:
        load_plugin(str(path.parent / plugin) if plugin.endswith(".py") else plugin)
    return resolve(cfg, path)


def read_bounded(path: Path) -> bytes:
    """At most one byte more than a config may have: a pipe or a huge file is not read to its end."""
    try:
        with open(path, "rb") as f:
            return f.read(limits.MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise BenchError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None


def schema_error(exc: pydantic.ValidationError, raw: dict) -> str:
    tags = {c.__name__ for c in Strict.__subclasses__()}  # `verdict: X | list[X]` tags its branch "X"

    def clean(loc) -> list[str]:  # drop pydantic's union-branch tags such as "literal['all']", not user keys
        kept = [str(p) for p in loc if not (isinstance(p, str) and (re.fullmatch(r"[a-z-]+\[.*\]", p)
                                                                   or p.startswith("function-") or p in tags))]
        return kept or [str(p) for p in loc]  # a user's key that looks like a tag ("[") is still named

    # the deepest error is the most specific; an unknown key (a typo) explains a missing one beside it
    err = max(exc.errors(), key=lambda e: (len(clean(e["loc"])), e["type"] == "extra_forbidden"))
    loc = clean(err["loc"])
    key = ".".join(p if p.isprintable() else repr(p) for p in loc)  # a key "\n" must not break the one line
    if err["type"] == "extra_forbidden":
        model: type[BaseModel] = StudyConfig
        for part in loc[:-1]:
            field = model.model_fields.get(part)
            ann = getattr(field, "annotation", None)
            sub = [t for t in (ann, *get_args(ann)) if isinstance(t, type) and issubclass(t, BaseModel)]
            model = sub[0] if sub else model  # `verdict: VerdictConfig | None` -> VerdictConfig
        names = [f.alias or n for n, f in model.model_fields.items()]
        return f"{key}: unknown key{did_you_mean(loc[-1], names)}; allowed here: {', '.join(names)}"
    if err["type"] == "missing":
        return f"{key}: required key is missing; add it (see configs/quickstart.yaml)"
    msg = re.sub(r" or instance of \w+", "", err["msg"].removeprefix("Value error, "))  # no class names
    got = repr(err.get("input"))
    return f"{key}: {msg} (got {got if len(got) <= 80 else got[:77] + '...'})"


def resolve(cfg: StudyConfig, path: Path) -> StudyConfig:
    """Check names against the registries; the same config with its name and every plugin's defaults filled in."""
    kinds: dict[str, str | None] = {}
    filled: dict[str, dict[str, PluginSpec]] = {"tasks": {}, "architectures": {}}
    for section, registry in (("tasks", TASKS), ("architectures", ARCHITECTURES)):
        for alias, spec in getattr(cfg, section).items():
            obj = _get(registry, spec.name, f"{path}: {section}.{alias}.name")
            params = validate_params(obj, spec.params, f"{path}: {section}.{alias}")
            filled[section][alias] = PluginSpec(name=spec.name, **params)
            if section == "tasks":
                check_task(obj, params, f"{path}: tasks.{alias}")
                kinds[alias] = task_kind(obj, params)
    ablations = []
    for i, spec in enumerate(cfg.ablations):
        obj = _get(ABLATIONS, spec.name, f"{path}: ablations.{i}.name")
        try:
            obj.declaration()  # a plugin that does not say what it removes and measures is refused here
        except BenchError as exc:
            raise BenchError(f"{path}: ablations.{i}: {exc}") from None
        ablations.append(PluginSpec(name=spec.name, **validate_params(obj, spec.params, f"{path}: ablations.{i}")))
    names = [a.name for a in ablations]
    if len(set(names)) != len(names):
        raise BenchError(f"{path}: ablations: each ablation may appear once; merge the duplicates")
    for i, (t, a) in enumerate(cfg.pairs()):
        if t not in cfg.tasks:
            raise BenchError(f"{path}: matrix.{i}: unknown task alias {t!r}{did_you_mean(t, cfg.tasks)}")
        if a not in cfg.architectures:
            raise BenchError(f"{path}: matrix.{i}: unknown architecture alias {a!r}{did_you_mean(a, cfg.architectures)}")
    for i, block in enumerate(cfg.multi_heads()):
        _check_multi_head(block, cfg, kinds, filled["tasks"], path,
                          "multi_head" if not isinstance(cfg.multi_head, list) else f"multi_head.{i}")
    pairs = cfg.verdict_pairs()
    for i, v in enumerate(pairs):
        where = "verdict" if not isinstance(cfg.verdict, list) else f"verdict.{i}"
        _check_verdict(v, cfg, names, path, where)
        _check_verdict_matrix(v, cfg, kinds, path, where)
        _check_verdict_family(v, names, path, where)
    labels = [v.label or v.dense for v in pairs]
    if any(v.stop == "interaction" for v in pairs) and (len(pairs) != 2 or len({v.ablation for v in pairs}) > 1):
        raise BenchError(f"{path}: verdict: stop: interaction needs exactly two pairs with the same headline "
                         f"ablation (this lists {len(pairs)}); list two, or use stop: decided")
    if len({(v.stop, v.halfwidth) for v in pairs}) > 1:  # one study stops on one rule (the driver reads the first)
        raise BenchError(f"{path}: verdict: the pairs' stop rules differ; give every pair the same stop (and halfwidth)")
    if len(set(labels)) != len(labels):
        raise BenchError(f"{path}: verdict: two pairs share the label {labels!r}; give each a distinct `label`")
    if len({v.scale for v in pairs}) > 1:  # the cells' test-time ablations are computed on it
        raise BenchError(f"{path}: verdict: the pairs' scale differ ({sorted({v.scale for v in pairs})}); one study "
                         "reads D on one scale: give every pair the same scale")
    if len({v.alpha for v in pairs}) > 1:  # exploratory rows are one Holm family across the pairs
        raise BenchError(f"{path}: verdict: the pairs' alpha differ ({sorted({v.alpha for v in pairs})}); give every "
                         "pair the same alpha (their exploratory rows share one Holm adjustment)")
    done = cfg.model_copy(update={"name": cfg.name or path.stem, **filled, "ablations": ablations})
    return headline_view(done, path) if cfg.headline_only else done


def headline_view(cfg: StudyConfig, path: Path) -> StudyConfig:
    """The study narrowed to what its pre-specified headline reads: the verdict pairs' tasks, each pair's headline
    architecture (now named in the pair) and its headline ablation. Why: with seeds the currency of a verdict, a
    run that only needs the headline should not pay for the exploratory rows."""
    pairs = cfg.verdict_pairs()
    if not pairs:
        raise BenchError(f"{path}: headline_only: true needs a verdict: block (its headline names the cells to run); "
                         "add one or remove headline_only")
    named = [v.model_copy(update={"architecture": headline_architecture(cfg, v)}) for v in pairs]
    keep = {(t, v.architecture) for v in named for t in (v.dense, v.global_)}
    matrix = [p for p in cfg.pairs() if p in keep]
    heads = {v.ablation for v in named}
    kept = {a for _, a in matrix}
    joint = [m.model_copy(update={"architectures": [a for a in m.architectures if a in kept]}) for m in cfg.multi_heads()]
    joint = [m for m in joint if m.architectures]
    return cfg.model_copy(update={
        "verdict": named if isinstance(cfg.verdict, list) else named[0],
        "multi_head": (joint if isinstance(cfg.multi_head, list) else joint[0]) if joint else None,
        "tasks": {t: s for t, s in cfg.tasks.items() if any(t == m[0] for m in matrix)},
        "architectures": {a: s for a, s in cfg.architectures.items() if any(a == m[1] for m in matrix)},
        "matrix": matrix, "ablations": [a for a in cfg.ablations if a.name in heads]})


def _check_multi_head(block: MultiHeadConfig, cfg: StudyConfig, kinds: dict[str, str | None],
                      tasks: dict[str, PluginSpec], path: Path, where: str) -> None:
    """A joint block: known aliases of the right kinds, each architecture in the matrix with exactly its two tasks
    and in no other block, and two tasks on the same images (``_same_images``)."""
    for key, alias, want in (("dense", block.dense, "segmentation"), ("global", block.global_, "classification")):
        if alias not in cfg.tasks:
            raise BenchError(f"{path}: {where}.{key}: unknown task alias {alias!r}{did_you_mean(alias, cfg.tasks)}")
        if kinds.get(alias) not in (None, want):
            raise BenchError(f"{path}: {where}.{key}: task {alias!r} is a {kinds[alias]} task; {where}.{key} needs a "
                             f"{want} task")
    pairs = cfg.pairs()
    for j, arch in enumerate(block.architectures):
        at = f"{where}.architectures.{j}"
        if arch not in cfg.architectures:
            raise BenchError(f"{path}: {at}: unknown architecture alias {arch!r}{did_you_mean(arch, cfg.architectures)}")
        owner = cfg.joint_of(arch)
        if owner is not block:
            raise BenchError(f"{path}: {at}: {arch!r} is in two multi_head blocks; one network has one pair of heads: "
                             "give the other block its own architecture alias")
        for task in (block.dense, block.global_):
            if (task, arch) not in pairs:
                raise BenchError(f"{path}: {at}: the matrix has no pair [{task}, {arch}]; a joint network is evaluated "
                                 "through both its heads: add the pair to matrix")
        other = next((t for t, a in pairs if a == arch and t not in (block.dense, block.global_)), None)
        if other is not None:
            raise BenchError(f"{path}: {at}: the matrix pairs the joint network {arch!r} with {other!r}, which is not "
                             f"one of its heads' tasks ({block.dense}, {block.global_}); remove the pair or pair "
                             f"{other!r} with a separate architecture alias")
    _same_images(tasks[block.dense], tasks[block.global_], block, path, where)


def _same_images(dense: PluginSpec, glob: PluginSpec, block: MultiHeadConfig, path: Path, where: str) -> None:
    """The two tasks of a joint network label the same images: the same task whose parameters differ only in those
    that choose the labels (a parameter that changes the task's kind, e.g. ``target``), or the global task is a
    twin of the dense one: ``classify_from_masks``, or any task whose factory says ``twin_of_source`` (e.g.
    ``classify_among``), with ``source:`` the dense task. The cell also checks the images batch by batch."""
    d, g = block.dense, block.global_
    fix = (f"give both the same parameters except the one that picks the labels (target), or make {g} "
           f"classify_from_masks with source: the mapping of {d} (a YAML alias)")
    if glob.name == "classify_from_masks" or getattr(TASKS.get(glob.name), "twin_of_source", False):
        spec = dict(glob.params.get("source") or {})
        name = spec.pop("name", None)
        try:
            params = validate_params(TASKS.get(name), spec, f"{path}: tasks.{g}.source") if name else None
        except BenchError:
            params = None  # the task's own check names what is wrong with its source
        if name != dense.name or params != dense.params:
            key = "name" if name != dense.name or params is None else next(
                k for k in sorted({*params, *dense.params}) if params.get(k) != dense.params.get(k))
            raise BenchError(f"{path}: {where}: {g} is not the classification twin of {d} (source.{key} differs from "
                             f"{d}'s); {fix}")
        return
    if glob.name != dense.name:
        raise BenchError(f"{path}: {where}: {d} ({dense.name}) and {g} ({glob.name}) are different tasks, so not the "
                         f"same images; {fix}")
    obj = TASKS.get(dense.name)
    base = task_kind(obj, dense.params)
    for key in sorted({*dense.params, *glob.params}):
        a, b = dense.params.get(key), glob.params.get(key)
        if a != b and (base is None or task_kind(obj, {**dense.params, key: b}) == base):  # not a labelling key
            raise BenchError(f"{path}: {where}: {d} and {g} do not have the same images ({key}: {a!r} vs {b!r}); {fix}")


def _check_verdict(v: VerdictConfig, cfg: StudyConfig, names: list[str], path: Path, where: str) -> None:
    """One dense/global pair: known task aliases, ablation and architecture."""
    for key, alias in (("dense", v.dense), ("global", v.global_)):
        if alias not in cfg.tasks:
            raise BenchError(f"{path}: {where}.{key}: unknown task alias {alias!r}{did_you_mean(alias, cfg.tasks)}")
    if v.ablation not in names:
        raise BenchError(f"{path}: {where}.ablation: {v.ablation!r} is not in ablations ({', '.join(names)}); add it")
    for alias in v.max_train_loss:
        if alias not in (v.dense, v.global_):
            raise BenchError(f"{path}: {where}.max_train_loss.{alias}: not one of the pair's tasks ({v.dense}, "
                             f"{v.global_}); key it by the dense or global task alias")
    if v.architecture is not None and v.architecture not in cfg.architectures:
        raise BenchError(f"{path}: {where}.architecture: unknown alias {v.architecture!r}"
                         f"{did_you_mean(v.architecture, cfg.architectures)}")


def _check_verdict_family(v: VerdictConfig, names: list[str], path: Path, where: str) -> None:
    """Only an ablation that removes the identity path can decide the claim (its declared family)."""
    family = ABLATIONS.get(v.ablation).family()
    if family != "identity":
        identity = [n for n in names if ABLATIONS.get(n).family() == "identity"]
        raise BenchError(f"{path}: {where}.ablation: {v.ablation!r} is in the {family} family (it does not remove "
                         f"the identity path), so it cannot decide the claim; name one that does "
                         f"({', '.join(identity) or 'skip_removal, skip_lesion'})")


def headline_architecture(cfg: StudyConfig, v: VerdictConfig) -> str:
    """v.architecture, else the first architecture natural for segmentation, else the first."""
    if v.architecture is not None:
        return v.architecture
    for alias, spec in cfg.architectures.items():
        if "segmentation" in getattr(ARCHITECTURES.get(spec.name), "natural", ()):
            return alias
    return next(iter(cfg.architectures))


def _check_verdict_matrix(v: VerdictConfig, cfg: StudyConfig, kinds: dict[str, str | None], path: Path,
                          where: str) -> None:
    """The verdict compares a dense and a global task: each must be in the matrix, with the architecture the
    verdict names if it names one, and of its side's kind, or the run would end "inconclusive" for nothing.
    (A default headline architecture may lack a pair: a run that drops one on purpose is still compared.)"""
    pairs = set(cfg.pairs())
    for key, alias, want in (("dense", v.dense, "segmentation"), ("global", v.global_, "classification")):
        if not any(t == alias for t, _ in pairs):
            raise BenchError(f"{path}: {where}.{key}: task {alias!r} is in no matrix pair; add a pair for it to matrix")
        if v.architecture is not None and (alias, v.architecture) not in pairs:
            raise BenchError(f"{path}: {where}.{key}: the matrix has no pair [{alias}, {v.architecture}] "
                             f"({v.architecture} is {where}.architecture); add the pair to matrix or name another")
        if kinds.get(alias) not in (None, want):
            raise BenchError(f"{path}: {where}.{key}: task {alias!r} is a {kinds[alias]} task; verdict.{key} needs a "
                             f"{want} task")


def task_kind(obj: Any, params: dict) -> str | None:
    """'classification' or 'segmentation' as the task factory declares it (``kind``: a string, or a function
    of the factory's parameters), without building the task; None when it does not say."""
    kind = getattr(obj, "kind", None)
    return kind(**params) if callable(kind) else kind


def check_task(obj: Any, params: dict, where: str) -> None:
    """Run the task factory's ``check(**params)`` hook, if it has one: cheap checks of what building the task
    would find (data roots, nested specs), so ``validate`` finds them without touching any data."""
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check(**params)
        except BenchError as exc:
            raise BenchError(f"{where}: {exc}") from None


def _get(registry, name: str, where: str):
    try:
        return registry.get(name)
    except BenchError as exc:
        raise BenchError(f"{where}: {exc}") from None


def config_hash(resolved: dict[str, Any]) -> str:
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]
