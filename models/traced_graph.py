"""Reading an identity flow out of a ``torch.fx`` graph, and rewriting it into ``bench.flow`` modules.

``read_flow(gm, sample)`` finds the merge points of a traced network and rewrites each into the module every
built-in ablation already acts on, so a third-party model needs no plugin code (``models/traced.py``):

* a **residual merge** is an ``add`` of two tensors of one shape whose sides both stay at the merge's
  resolution from the node where they part (the *fork*). The identity is the side that is the fork itself
  (``x + f(x)``), else the side with fewer operations (a projection ``downsample(x)``); equal sides cannot be
  told apart and are an error. The nodes of each side move into their own GraphModule inside a
  ``TracedBlock`` (a ``ResidualBlock``), so a lesion skips the branch instead of computing and discarding it.
* a **long skip** is a channel ``cat`` (or an ``add``) where one operand stays at the merge's resolution from
  the fork and every path to the other goes through a lower one (an encoder map joined into a decoder): a
  ``TracedMerge`` (a free ``Merge``) with identity = the operand that stayed, at U-Net level log2(input /
  merge resolution), -1 for the raw input.
* everything else (an ``add`` of two maps that both went through lower resolutions, as an FPN's fusion of its
  levels, a token ``cat``) is left as it is.

Blocks and skips a model already declares (``ResidualBlock``, ``Merge``) stay single nodes and are kept as they
are: that is how a merge the graph cannot decide is declared by hand. In-place ops are made out of place first:
a lesion hands a block's input on as its output, which an in-place activation after it must not overwrite.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from bench.errors import first_line
from bench.flow import BlockGroup, Merge, ResidualBlock

from .heads import ClassifierHead, SegmentationHead

HOW = "docs/protocols.md, 'Any model: the traced adapter'"
ADDS = (operator.add, torch.add)
CATS = (torch.cat, torch.concat, torch.concatenate)
INPLACE = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
           operator.itruediv: operator.truediv}
VIEWS = {"view", "view_as", "reshape", "transpose", "permute", "narrow", "select", "unsqueeze", "squeeze",
         "expand", "flatten", "unflatten", "as_strided", "chunk", "split", "unbind", "t", "diagonal"}
POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ROOT = "merges"  # the ModuleDict that holds every merge point, in forward order


class TracedBlock(ResidualBlock):
    """A residual merge read from a graph: y = merge(shortcut(x), branch(x)); each side is a GraphModule of the
    nodes that were exclusively on it. Values the branch reads from outside the block (``extras``: a position
    table, a shape) are passed on after x."""

    def forward(self, x: torch.Tensor, *extras: object) -> torch.Tensor:
        identity = self.shortcut(x, *extras)
        branch = None if self.merge.drops_branch else self.branch(x, *extras)
        return self.post(self.merge(identity, branch))


class Passthrough(nn.Identity):
    """The shortcut of ``x + f(x)``: the block's input itself."""

    def forward(self, x: torch.Tensor, *extras: object) -> torch.Tensor:
        return x


class TracedMerge(Merge):
    """A long skip read from a graph; concatenates in the model's own order (``cat([skip, up])`` or
    ``cat([up, skip])``), so that the idle merge is the original operation."""

    def __init__(self, kind: str, *, level: int, channels: int, identity_first: bool):
        super().__init__(kind, level=level, channels=channels)  # type: ignore[arg-type]
        self.identity_first = identity_first

    def _combine(self, identity: torch.Tensor | None, branch: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "concat" and self.identity_first:
            return torch.cat([identity, branch], dim=1)
        return super()._combine(identity, branch)


class FlowTracer(fx.Tracer):
    """torch.fx's tracer with timm's leaf modules and functions. Declared blocks and bench's heads stay leaves;
    ``inline=True`` traces through ResidualBlock and Merge (the raw graph of a hand-declared model)."""

    def __init__(self, leaves: Iterable[type] = (), functions: Iterable[Callable] = (), inline: bool = False):
        super().__init__(autowrap_functions=tuple(functions))
        self.leaves = (ClassifierHead, SegmentationHead, *leaves, *(() if inline else (ResidualBlock, Merge)))
        self.failed_at: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_at is None:  # the innermost module is told first
                self.failed_at = f"{self.path_of_module(m) or '<root>'} ({type(m).__name__})"
            raise


def trace(root: nn.Module, what: str, tracer: FlowTracer) -> fx.GraphModule:
    """``root`` as a GraphModule, or a one-line ValueError naming the module torch.fx stopped in. Traced in
    evaluation mode: a Python ``if self.training`` is frozen at trace time, and frozen in training mode it would
    draw stochastic depth in every evaluation (stochastic depth modules stay leaves, so training still drops)."""
    was = root.training
    root.eval()
    try:
        graph = tracer.trace(root)
    except Exception as exc:
        where = f" in {tracer.failed_at}" if tracer.failed_at else ""
        raise ValueError(f"{what}: torch.fx cannot trace it{where} ({first_line(exc, 160)}); make that module one "
                         "opaque node (timm.layers.register_notrace_module) or declare the model's merge points by hand "
                         f"({HOW})") from None
    finally:
        root.train(was)
    return fx.GraphModule(root, graph, class_name=type(root).__name__).train(was)


def shape(node: object) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def propagate(gm: fx.GraphModule, sample: torch.Tensor) -> None:
    """Every node's output shape (ShapeProp) from one evaluation-mode pass, without touching BN statistics."""
    was = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(sample)
    finally:
        gm.train(was)


def functionalize(gm: fx.GraphModule) -> None:
    """In-place ops out of place; later readers of the mutated tensor read the result instead (same values)."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        target = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if target is None or (target.op == "call_method" and target.target in VIEWS) or target.target is operator.getitem:
            continue  # writing through a view changes its base: left in place
        if node.op == "call_module" and getattr(gm.get_submodule(node.target), "inplace", False) is True:
            gm.get_submodule(node.target).inplace = False
        elif node.op == "call_function" and node.target in INPLACE:
            node.target = INPLACE[node.target]
        elif node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        elif (node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_")
              and hasattr(torch.Tensor, node.target[:-1])):
            node.target = node.target[:-1]
        else:
            continue
        for user in list(target.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(target, node)
    gm.recompile()


REDUCE = {"mean", "amax", "max", "sum", "logsumexp"}
FUNCTIONAL_POOLS = (nn.functional.adaptive_avg_pool2d, nn.functional.adaptive_max_pool2d)


def dominators(gm: fx.GraphModule, value: fx.Node) -> list[fx.Node]:
    """The nodes every tensor path from the input to ``value`` goes through, input first, ``value`` last (the
    main path: a residual block's inside is not on it, its merge is)."""
    data = Ancestry(gm.graph, tensors=True)
    nodes = [n for n in data.nodes if data.depends_on_input(n) and data.closure(value) >> data.index[n] & 1]
    idom: dict[fx.Node, fx.Node | None] = {}
    depth: dict[fx.Node, int] = {}
    for n in nodes:
        preds = [a for a in n.all_input_nodes if a in idom and "tensor_meta" in a.meta]
        if not preds:
            idom[n], depth[n] = None, 0
            continue
        d = preds[0]
        for q in preds[1:]:  # the nearest common dominator of all predecessors
            while d is not q:
                if d is None or q is None:
                    d = None
                    break
                if depth[d] >= depth[q]:
                    d = idom[d]
                else:
                    q = idom[q]
        idom[n], depth[n] = d, (depth[d] + 1 if d is not None else 0)
    chain, n = [], value
    while n is not None:
        chain.append(n)
        n = idom.get(n)
    return chain[::-1]


def pooling(gm: fx.GraphModule, n: fx.Node) -> str | None:
    """'map' / 'nhwc' / 'tokens' where ``n`` pools its input globally (an adaptive pool, a mean or max over a
    map's spatial dimensions or over the tokens, one token selected: ``x[:, 0]``), else None."""
    src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
    s = shape(src)
    if s is None:
        return None
    if (n.op == "call_module" and isinstance(gm.get_submodule(n.target), POOLS)) or (
            n.op == "call_function" and n.target in FUNCTIONAL_POOLS):
        return "map" if len(s) == 4 else None
    name = n.target if n.op == "call_method" else getattr(n.target, "__name__", None) if n.op == "call_function" else None
    if name in REDUCE and len(s) in (3, 4):
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        dims = {d % len(s) for d in (dim if isinstance(dim, list | tuple) else [dim])} if dim is not None else None
        if len(s) == 4 and dims == {2, 3}:
            return "map"
        if len(s) == 4 and dims == {1, 2}:
            return "nhwc"
        if len(s) == 3 and dims == {1}:
            return "tokens"
    if n.op == "call_function" and n.target is operator.getitem and len(s) == 3:
        index = n.args[1]
        if isinstance(index, tuple) and len(index) >= 2 and index[0] == slice(None) and isinstance(index[1], int) and all(
                i == slice(None) for i in index[2:]):
            return "tokens"
    return None


def cut_to_features(gm: fx.GraphModule, what: str) -> tuple[fx.GraphModule, str]:
    """A classifier's graph cut back to its features, where bench puts the head: the input of the last global
    pooling on the main path to the output (the dominators of the output: every path from the input goes
    through it), so neither a map inside a block nor the classifier's own maps (a LayerNorm2d on the pooled
    map) is taken. Returns the graph and the features' layout: 'map' (B, C, H, W), 'nhwc' or 'tokens' (B, N, C).
    Where no global pooling is on the main path, a one-line error: the cut cannot be decided."""
    functionalize(gm)  # nothing off the main path is dropped that wrote into it
    out = next(n for n in gm.graph.nodes if n.op == "output")
    value = out.args[0]
    if len(shape(value) or ()) == 4:
        return gm, "map"
    if not isinstance(value, fx.Node) or shape(value) is None:
        raise ValueError(f"{what}: its output is a {type(value).__name__}, not one tensor; return the feature map "
                         "from the model")
    chain = dominators(gm, value)
    pools = [(n, layout) for n in chain if (layout := pooling(gm, n)) is not None]
    if not pools or pools[-1][0].args[0] not in chain:
        raise ValueError(f"{what}: no global pooling (adaptive pool, mean over the map or the tokens, a class-token "
                         f"select) lies on every path to its output {shape(value)}, so where its head begins cannot "
                         "be decided; return the feature map from the model (a factory returning the trunk)")
    node, layout = pools[-1]
    last = node.args[0]
    while last.op == "call_module" and isinstance(gm.get_submodule(last.target), POOLS):
        last = last.args[0]  # a pool already at 1x1 before the flattening mean
    out.args = (last,)
    keep = Ancestry(gm.graph).closure(last)
    index = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in reversed(list(gm.graph.nodes)):  # the head, and the asserts on shapes (a ViT's) that kept it alive
        if n.op != "placeholder" and n is not out and not keep >> index[n] & 1:
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    return fx.GraphModule(gm, gm.graph, class_name=type(gm).__name__), layout


class Ancestry:
    """Each node's ancestors as a bit set over the graph's (topological) node order. ``tensors=True`` follows
    only edges that carry a tensor: an upsampling whose size is read off the skip (``skip.shape``) is not
    computed from the skip's values."""

    def __init__(self, graph: fx.Graph, tensors: bool = False):
        self.nodes = list(graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.anc: dict[fx.Node, int] = {}
        for n in self.nodes:
            bits = 0
            for a in n.all_input_nodes:
                if not tensors or "tensor_meta" in a.meta:
                    bits |= self.anc[a] | (1 << self.index[a])
            self.anc[n] = bits
        self.data = sum(1 << self.index[n] for n in self.nodes if n.op == "placeholder")

    def closure(self, n: fx.Node) -> int:
        return self.anc[n] | (1 << self.index[n])

    def members(self, bits: int) -> list[fx.Node]:
        out = []
        while bits:
            low = bits & -bits
            out.append(self.nodes[low.bit_length() - 1])
            bits ^= low
        return out

    def descendants(self, f: fx.Node) -> int:
        bit = 1 << self.index[f]
        return sum(1 << i for i in range(self.index[f] + 1, len(self.nodes)) if self.anc[self.nodes[i]] & bit)

    def depends_on_input(self, n: fx.Node) -> bool:
        return bool(self.closure(n) & self.data)


def operands(node: fx.Node) -> tuple[str, fx.Node, fx.Node] | None:
    """(kind, a, b) of a two-tensor add of one shape, or of a channel cat of two maps of one size; else None."""
    if (node.op == "call_function" and node.target in ADDS) or (node.op == "call_method" and node.target == "add"):
        if len(node.args) == 2 and not node.kwargs and all(isinstance(a, fx.Node) for a in node.args):
            a, b = node.args
            if a is not b and shape(a) is not None and shape(a) == shape(b):
                return "add", a, b
    elif node.op == "call_function" and node.target in CATS:
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if isinstance(parts, list | tuple) and len(parts) == 2 and all(isinstance(p, fx.Node) for p in parts):
            sa, sb = shape(parts[0]), shape(parts[1])
            if sa and sb and len(sa) == len(sb) == 4 and dim in (1, -3) and sa[2:] == sb[2:] and parts[0] is not parts[1]:
                return "concat", parts[0], parts[1]
    return None


def spatial(node: fx.Node, nhwc: bool = False) -> tuple[int, int, int] | None:
    """(batch, height, width) of a 4-D map in the model's layout, else None."""
    s = shape(node)
    if s is None or len(s) != 4:
        return None
    return (s[0], s[1], s[2]) if nhwc else (s[0], s[2], s[3])


def lower(node: fx.Node, size: tuple[int, int, int], nhwc: bool = False) -> bool:
    """A map of the same batch at a lower resolution than ``size`` in both spatial dimensions (window or head
    tensors, whose first dimension is not the batch, never are)."""
    s = spatial(node, nhwc)
    return s is not None and s[0] == size[0] and s[1] < size[1] and s[2] < size[2]


class Found:
    """One merge point found at node ``m``: its role, which operand is the identity, and the block's region."""

    def __init__(self, role: str, kind: str, m: fx.Node, identity: fx.Node, branch: fx.Node, fork: fx.Node,
                 id_side: Iterable[fx.Node] = (), br_side: Iterable[fx.Node] = ()):
        self.role, self.kind, self.m, self.identity, self.branch, self.fork = role, kind, m, identity, branch, fork
        self.id_side, self.br_side = list(id_side), list(br_side)


def where(node: fx.Node, strip: str = "") -> str:
    return f"node {node.name!r} in {scope(node, strip) or '<root>'}"


def classify(data: Ancestry, full: Ancestry, m: fx.Node, skips: set[fx.Node] = frozenset(),
             nhwc: bool = False, merges: set[fx.Node] = frozenset(), strip: str = "") -> Found | None:
    """What merge point ``m`` is, if any (module docstring); a ValueError where a residual's roles are undecidable.
    ``data`` follows tensor edges (which side is computed from which), ``full`` every edge (what a block holds)."""
    found = operands(m)
    if found is None:
        return None
    kind, a, b = found
    if not (data.depends_on_input(a) and data.depends_on_input(b)):
        return None  # a learned constant added in (a position table): no path to merge
    common = data.closure(a) & data.closure(b)
    if not common:
        return None
    fork = data.nodes[common.bit_length() - 1]  # the latest node both sides are computed from
    stay_a, stay_b = stays(data, fork, a, b, spatial(m, nhwc), skips, nhwc)
    if stay_a != stay_b:
        identity, branch = (a, b) if stay_a else (b, a)
        return Found("skip", kind, m, *ROLES(identity, branch), fork)
    if not stay_a or kind != "add":
        return None
    down = full.descendants(fork)
    side_a, side_b = full.members(full.closure(a) & down), full.members(full.closure(b) & down)
    if a is fork or (b is not fork and len(side_a) < len(side_b)):
        identity, branch, id_side, br_side = a, b, side_a, side_b
    elif b is fork or len(side_b) < len(side_a):
        identity, branch, id_side, br_side = b, a, side_b, side_a
    else:
        raise ValueError(f"residual merge at {where(m, strip)}: both sides have {len(side_a)} operations after "
                         f"{fork.name!r}, so which one is the identity cannot be decided; declare that block by hand "
                         f"({HOW})")
    inner = [n for n in id_side if n in merges]
    if inner:  # x + a(x) + b(x): (x + a(x)) would be the "identity" of b, a block nested in a shortcut
        raise ValueError(f"residual merge at {where(m, strip)}: its identity side holds another merge "
                         f"(in {scope(inner[0], strip) or '<root>'}), as in x + a(x) + b(x) (two branches added to one identity), which "
                         f"the graph reader does not split; declare that block by hand ({HOW})")
    return Found("block", kind, m, *ROLES(identity, branch), fork, *ROLES(id_side, br_side))


def keep(identity: object, branch: object) -> tuple[object, object]:
    return identity, branch


ROLES = keep  # the one place the roles are assigned (tests swap it to check that they would notice)


def stays(anc: Ancestry, fork: fx.Node, a: fx.Node, b: fx.Node, size: tuple[int, int, int] | None,
          skips: set[fx.Node], nhwc: bool = False) -> tuple[bool, bool]:
    """Whether ``a`` and ``b`` are each reached from the fork along a path that never drops below ``size``; a
    long skip already found passes on its branch only (a U-Net's input skip joins a decoder map that the level-0
    skip also reaches: the decoder itself came up from below)."""
    if size is None:
        return True, True
    high: set[fx.Node] = set()
    if not lower(fork, size, nhwc):
        high.add(fork)
    for n in anc.members((anc.closure(a) | anc.closure(b)) & anc.descendants(fork)):
        inputs = [n.args[1]] if n in skips else n.all_input_nodes
        if not lower(n, size, nhwc) and any(i in high for i in inputs):
            high.add(n)
    return a in high, b in high


def scope(node: fx.Node, strip: str = "") -> str:
    """The module whose forward computed ``node`` (a hand-declared block, not its Merge), minus ``strip``."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    if not stack:
        return ""
    path, typ = stack[-1]
    if isinstance(typ, type) and issubclass(typ, Merge) and len(stack) > 1 and issubclass(stack[-2][1], ResidualBlock):
        path = stack[-2][0]
    return path[len(strip):] if strip and path.startswith(strip) else path


def subgraph(gm: fx.GraphModule, fork: fx.Node, extras: list[fx.Node], nodes: list[fx.Node], out: fx.Node,
             name: str) -> fx.GraphModule:
    """The nodes of one side as a GraphModule of (x, *extras); parameters read on the way come along."""
    g = fx.Graph()
    env = {fork: g.placeholder("x")}
    for i, e in enumerate(extras):
        env[e] = g.placeholder(f"extra_{i}")

    def arg(n: fx.Node) -> fx.Node:
        if n not in env:  # a get_attr: a parameter or constant read inside the side
            env[n] = g.node_copy(n)
        return env[n]

    for n in nodes:
        env[n] = g.node_copy(n, arg)
    g.output(env[out])
    return fx.GraphModule(gm, g, class_name=name)


def extract(gm: fx.GraphModule, anc: Ancestry, f: Found, strip: str = "") -> tuple[TracedBlock, list[fx.Node]]:
    """The block of a residual merge, its extra inputs; a ValueError where a value inside escapes the block."""
    region = set(f.id_side) | set(f.br_side)
    tails: set[fx.Node] = set()  # an assert on a value inside the branch (x.dim() -> eq -> _assert) belongs to it
    start = min(anc.index[n] for n in f.br_side) if f.br_side else len(anc.nodes)
    below = set(region)  # what is computed from the branch alone (with the fork and parameters)
    for u in anc.nodes[start:]:
        if u not in region and u is not f.m and u.op not in ("output", "placeholder") and any(
                i in below for i in u.all_input_nodes) and all(
                i in below or i is f.fork or i.op == "get_attr" for i in u.all_input_nodes):
            below.add(u)
    for u in reversed(anc.nodes[start:]):  # ... and read by nothing else
        if u in below and u not in region and all(v in tails for v in u.users):
            tails.add(u)
    f.br_side = sorted({*f.br_side, *tails}, key=anc.index.get)
    region.update(tails)
    for n in sorted(region, key=anc.index.get):
        escapes = [u for u in n.users if u not in region and u is not f.m]
        if escapes:
            raise ValueError(f"residual merge at {where(f.m, strip)}: {n.name!r} inside it is also read by "
                             f"{escapes[0].name!r} outside, so the block cannot be cut out of the graph; declare that block by hand ({HOW})")
    extras = sorted({i for n in region for i in n.all_input_nodes
                     if i not in region and i is not f.fork and i.op != "get_attr"}, key=anc.index.get)
    branch = subgraph(gm, f.fork, extras, f.br_side, f.branch, "Branch")
    projection = [n for n in f.id_side if not (n.op == "call_module" and type(gm.get_submodule(n.target)) is nn.Identity)]
    shortcut = subgraph(gm, f.fork, extras, f.id_side, f.identity, "Shortcut") if f.id_side else Passthrough()
    kind = "projection" if projection else "identity"
    block = TracedBlock(branch, shortcut, same_shape=kind == "identity" and shape(f.fork) == shape(f.m),
                        shortcut_kind=kind)
    return block, extras


def read_flow(gm: fx.GraphModule, sample: torch.Tensor, strip: str = "", nhwc: bool = False) -> fx.GraphModule:
    """``gm`` rewritten (its graph is reused): every merge point found becomes a module under ``merges``, in
    forward order; ``strip`` is left off the names (a wrapper's attribute)."""
    if hasattr(gm, ROOT):
        raise ValueError(f"the traced model already has an attribute {ROOT!r}; rename it")
    functionalize(gm)
    gm.graph.eliminate_dead_code()  # an unused shape read inside a block would look like a value leaving it
    propagate(gm, sample)
    graph = gm.graph
    found_scopes: dict[str, str] = {}  # temporary target -> scope of the merge it replaced
    done: set[fx.Node] = set()
    count = 0
    while True:
        anc, data = Ancestry(graph), Ancestry(graph, tensors=True)
        merges = {n for n in anc.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target),
                                                                               Merge | ResidualBlock)}
        skips = {n for n in merges if isinstance(gm.get_submodule(n.target), Merge)}
        step = next(((m, f) for m in anc.nodes
                     if m not in done and (f := classify(data, anc, m, skips, nhwc, merges, strip)) is not None), None)
        if step is None:
            break
        m, f = step
        target = f"_flow_{count}"
        count += 1
        if f.role == "skip":
            module: nn.Module = skip_merge(f, graph, nhwc)
            args: tuple = (f.identity, f.branch)
            erase: list[fx.Node] = []
        else:
            module, extras = extract(gm, anc, f, strip)
            args, erase = (f.fork, *extras), sorted(set(f.id_side) | set(f.br_side), key=anc.index.get)
        gm.add_submodule(target, module)
        with graph.inserting_before(m):
            new = graph.call_module(target, args)
        new.meta = dict(m.meta)
        found_scopes[target] = scope(m, strip)
        m.replace_all_uses_with(new)
        graph.erase_node(m)
        for n in reversed(erase):
            graph.erase_node(n)
        done.add(new)
    for n in list(graph.nodes):  # parameters that only the moved nodes read
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
    on_path(graph, done, found_scopes)
    return collect(gm, found_scopes)


def on_path(graph: fx.Graph, found: set[fx.Node], found_scopes: dict[str, str]) -> None:
    """Every merge point found lies on a path from the input to the features; one kept alive by an assert or a
    shape read alone (the features were cut before it) is a one-line error, never a silent ablation of nothing."""
    data = Ancestry(graph, tensors=True)
    out = next(n for n in graph.nodes if n.op == "output")
    feeds = 0
    for a in out.all_input_nodes:
        feeds |= data.closure(a)
    for n in sorted(found, key=data.index.get):
        if not feeds >> data.index[n] & 1:
            raise ValueError(f"the merge found at node {n.name!r} in {found_scopes.get(n.target) or '<root>'} does not "
                             f"feed the features (only {sorted(u.name for u in n.users)} read it): the traced adapter "
                             f"read the graph wrong; declare the model's merge points by hand ({HOW}) and report it")


def skip_merge(f: Found, graph: fx.Graph, nhwc: bool) -> TracedMerge:
    source = next(n for n in graph.nodes if n.op == "placeholder")
    level = -1 if f.identity is source else round(math.log2(shape(source)[2] / spatial(f.m, nhwc)[1]))
    first = (f.m.args[0][0] if f.kind == "concat" else f.m.args[0]) is f.identity
    return TracedMerge(f.kind, level=level, channels=shape(f.identity)[-1 if nhwc else 1], identity_first=first)


def collect(gm: fx.GraphModule, found_scopes: dict[str, str]) -> fx.GraphModule:
    """Every merge point (found or declared) under ``merges``, in forward order, named after its module, with each
    found block's stage (+1 at a shape-changing block, or where the identity flow's size per example changed
    between two blocks); a fresh GraphModule holds what is used.

    Residual merges found in one module's forward form one unit of depth only where that forward holds both an
    attention branch and an MLP one (a transformer block): a ``BlockGroup`` named after that module, its members
    numbered, each branch's kind declared. Elsewhere (residual adds written inline in one forward, a ResNet
    stage) each merge is its own unit and declares no kind: the kinds mean something only beside each other."""
    calls = [n for n in gm.graph.nodes
             if n.op == "call_module" and isinstance(gm.get_submodule(n.target), ResidualBlock | Merge)]
    targets = list(dict.fromkeys(n.target for n in calls))
    scopes = {t: found_scopes.get(t, t) for t in targets}
    totals, seen = Counter(scopes.values()), Counter()
    kinds = {t: branch_kind(gm.get_submodule(t).branch) for t in targets if isinstance(gm.get_submodule(t), TracedBlock)}
    groups = {s for s, k in totals.items() if k > 1 and all(
        t in kinds and gm.get_submodule(t).same_shape for t in targets if scopes[t] == s) and {
        kinds[t] for t in targets if scopes[t] == s} == {"attention", "mlp"}}
    names: dict[str, str] = {}
    holder = nn.Module()
    for t in targets:
        base = scopes[t].replace(".", "_") or "root"
        if scopes[t] in groups:
            if seen[scopes[t]] == 0:
                holder.add_module(base, BlockGroup())
            getattr(holder, base).append(gm.get_submodule(t))
            gm.get_submodule(t).branch_kind = kinds[t]
            names[t] = f"{base}.{seen[scopes[t]]}"
        else:
            names[t] = base if totals[scopes[t]] == 1 else f"{base}_{seen[scopes[t]]}"
            holder.add_module(names[t], gm.get_submodule(t))
        seen[scopes[t]] += 1
    stage, previous = 0, None
    for n in calls:
        module = gm.get_submodule(n.target)
        if isinstance(module, ResidualBlock):
            if previous is not None and (not module.same_shape or per_example(n.args[0]) != previous):
                stage += 1
            if isinstance(module, TracedBlock):
                module.stage = stage
            previous = per_example(n)
    gm.add_module(ROOT, holder)
    for n in calls:
        n.target = f"{ROOT}.{names[n.target]}"
    gm.graph.lint()
    out = fx.GraphModule(gm, gm.graph, class_name=type(gm).__name__)  # copies only what the graph uses
    if calls:
        out.add_module(ROOT, holder)  # the holder itself, in its place: GraphModule copied plain containers
    return out


def per_example(node: fx.Node) -> int | None:
    """Elements per example: what a reshape between blocks keeps (a Swin block's NHWC and token views) and a
    downsampling stage changes."""
    s = shape(node)
    return math.prod(s[1:]) if s else None


ATTENTION = (nn.functional.scaled_dot_product_attention, torch.softmax, nn.functional.softmax)


def branch_kind(branch: nn.Module) -> str:
    """'attention' where the branch mixes positions (an attention op), else 'mlp'."""
    graph = getattr(branch, "graph", None)
    nodes = graph.nodes if graph is not None else ()
    mixing = any((n.op == "call_function" and n.target in ATTENTION) or (n.op == "call_method" and n.target == "softmax")
                 or (n.op == "call_module" and isinstance(branch.get_submodule(n.target), nn.MultiheadAttention | nn.Softmax))
                 for n in nodes)
    return "attention" if mixing else "mlp"
