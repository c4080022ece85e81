"""Any model, no plugin code: ``{name: traced, model: "timm:convnext_atto", ...}``.

The model is built by its library (``timm:NAME``, ``torchvision:NAME``, ``smp:ARCH`` or a dotted path
``my_pkg.nets:make_net`` to a factory of your own that returns an ``nn.Module``), its feature extractor is traced
with ``torch.fx`` (timm's leaf modules and functions honoured) and its merge points are read from the graph and
rewritten into ``bench.flow`` modules (``models/traced_graph.py``: residual adds become ``ResidualBlock``s, long
skips ``Merge``s), so every built-in ablation applies. A bench head reads the last feature map, as
``FlowModel`` does for the built-ins: timm's ``forward_features``; a classifier cut back before its adaptive
pooling; a ViT's patch tokens laid out as a (B, C, H/p, W/p) map, its class and register tokens left out.

Every key besides ``model`` and ``checkpoint`` goes to the library as it is (``img_size: 32``, ``encoder_name:
resnet18``, ``pretrained: true``). What the graph cannot decide is a one-line error naming the node and the fix.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import fx, nn

from bench.data import TaskInfo
from bench.errors import did_you_mean, first_line

from .heads import FlowModel, make_head
from .pretrained import fetch_failed, load_checkpoint
from .traced_graph import FlowTracer, cut_to_features, dominators, propagate, read_flow, shape, trace

LIBRARIES = ("timm", "torchvision", "smp")


class TracedParams(BaseModel):
    """``model`` and ``checkpoint``; any other key is passed on to the model's library (or factory) as it is."""

    model_config = ConfigDict(extra="allow")
    model: str = Field("timm:resnet18", min_length=1, max_length=300, description=(
        "timm:NAME, torchvision:NAME, smp:ARCH (Unet, FPN, ...; encoder_name as a key) or a dotted path "
        "pkg.module:factory returning an nn.Module; other keys go to it"))
    checkpoint: str | None = Field(None, description=(
        "A local state dict in the library's naming (or saved from bench), loaded after the graph is read."))

    @model_validator(mode="after")
    def _finite(self) -> TracedParams:
        """The keys passed on are the library's to check, except that inf and nan are never a setting."""
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key}: {value} is not a setting; give a finite number")
        return self


class TokenGrid(nn.Module):
    """ViT tokens (B, N, C) -> (B, C, H/p, W/p): the ``prefix`` class/register tokens dropped, patches laid out."""

    def __init__(self, prefix: int, patch: tuple[int, int]):
        super().__init__()
        self.prefix, self.patch = prefix, tuple(patch)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2] // self.patch[0], image.shape[-1] // self.patch[1]
        x = tokens[:, self.prefix:]
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class ChannelsFirst(nn.Module):
    """(B, H, W, C) -> (B, C, H, W): a timm model whose features are NHWC (``output_fmt``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class TimmFeatures(nn.Module):
    """What gets traced of a timm model: ``forward_features`` (its head is bench's)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class SmpFeatures(nn.Module):
    """What gets traced of an smp model: encoder and decoder, as smp's own forward calls them (no input check)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.encoder, self.decoder = net.encoder, net.decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class Source:
    """A built model ready to trace, and how to read it."""

    root: nn.Module  # what is traced
    naming: nn.Module  # the library's own module: a checkpoint in its naming loads through it
    strip: str = ""  # a wrapper's attribute, left off the merge points' names
    cut: bool = False  # a classifier: cut back to its last feature map
    tokens: tuple[int, tuple[int, int]] | None = None  # a ViT's (prefix tokens, patch size)
    nhwc: bool = False  # features (B, H, W, C)
    size: tuple[int, int] | None = None  # the input size the model is fixed to, if any
    pretraining: dict | None = None


def build_source(spec: str, task: TaskInfo, kwargs: dict[str, Any]) -> Source:
    library, sep, name = spec.partition(":")
    if sep and library in LIBRARIES:
        try:
            return {"timm": timm_source, "torchvision": torchvision_source, "smp": smp_source}[library](name, task, kwargs)
        except TypeError as exc:  # a key the library does not take
            raise ValueError(f"model {spec!r}: {first_line(exc)}; every key besides model and checkpoint is passed to "
                             f"{library} as it is: check its name") from None
    return factory_source(spec, task, kwargs)


def pretrained_guard(what: str, wanted: bool, make: Callable[[], nn.Module]) -> nn.Module:
    """``make()``; where hub weights were asked for and could not be fetched, the one line that says what to do."""
    try:
        return make()
    except (OSError, RuntimeError) as exc:  # no network / no such pretrained tag
        if not wanted:
            raise
        raise fetch_failed(what, exc) from None


def timm_source(name: str, task: TaskInfo, kwargs: dict[str, Any]) -> Source:
    import timm

    if not timm.is_model(name):
        raise ValueError(f"model 'timm:{name}' is not a timm model{did_you_mean(name, timm.list_models())}")
    for key in ("num_classes", "global_pool"):
        if key in kwargs:
            raise ValueError(f"model 'timm:{name}': {key} is set by bench (num_classes=0, global_pool='': bench's head "
                             f"reads the features, and pools them itself); leave {key} out")
    wanted = bool(kwargs.get("pretrained"))
    net = pretrained_guard(f"traced timm:{name}", wanted, lambda: timm.create_model(
        name, num_classes=0, global_pool="", **{"in_chans": task.in_channels, **kwargs}))
    embed = getattr(net, "patch_embed", None)
    size = tuple(embed.img_size) if getattr(embed, "strict_img_size", False) and embed.img_size else None
    tokens = declared_tokens(net)
    pretraining = {"source": "timm", "weights": net.pretrained_cfg.get("hf_hub_id") or name} if wanted else None
    return Source(TimmFeatures(net), net, strip="net.", tokens=tokens, size=size, pretraining=pretraining,
                  nhwc=getattr(net, "output_fmt", "NCHW") == "NHWC")


def torchvision_source(name: str, task: TaskInfo, kwargs: dict[str, Any]) -> Source:
    import torchvision

    if name not in torchvision.models.list_models():
        raise ValueError(f"model 'torchvision:{name}' is not a torchvision model"
                         f"{did_you_mean(name, torchvision.models.list_models())}")
    if task.in_channels != 3:
        raise ValueError(f"model 'torchvision:{name}' takes 3 input channels, the task has {task.in_channels}; use "
                         "a timm model (in_chans follows the task)")
    weights = kwargs.get("weights")
    net = pretrained_guard(f"traced torchvision:{name}", bool(weights),
                           lambda: torchvision.models.get_model(name, **kwargs))
    return Source(net, net, cut=True, pretraining={"source": "torchvision", "weights": str(weights)} if weights else None)


def smp_source(arch: str, task: TaskInfo, kwargs: dict[str, Any]) -> Source:
    import segmentation_models_pytorch as smp

    weights = kwargs.pop("encoder_weights", None)  # smp's default (imagenet) would download: opt in
    net = pretrained_guard(f"traced smp:{arch}", bool(weights), lambda: smp.create_model(
        arch, encoder_weights=weights, **{"in_channels": task.in_channels, "classes": 1, **kwargs}))
    return Source(SmpFeatures(net), net, pretraining={"source": "smp", "weights": str(weights)} if weights else None)


def factory_source(spec: str, task: TaskInfo, kwargs: dict[str, Any]) -> Source:
    module, sep, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module or not attr:
        raise ValueError(f"model {spec!r}: give timm:NAME, torchvision:NAME, smp:ARCH or a dotted path "
                         "pkg.module:factory")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model {spec!r}: cannot import it ({first_line(exc)}); give pkg.module:factory, importable "
                         "from here") from None
    params = inspect.signature(factory).parameters if callable(factory) else {}
    if "in_channels" in params and "in_channels" not in kwargs:
        kwargs = {**kwargs, "in_channels": task.in_channels}
    try:
        net = factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"model {spec!r}: {first_line(exc)}; every key besides model and checkpoint is passed to the "
                         "factory as it is: check its signature") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"model {spec!r} returned {type(net).__name__}, not an nn.Module; return the network")
    return Source(net, net, cut=True, tokens=declared_tokens(net), size=fixed_size(net))


def declared_tokens(net: nn.Module) -> tuple[int, tuple[int, int]] | None:
    """A ViT's (prefix tokens, patch size) as its library declares them: timm's ``num_prefix_tokens`` and
    ``patch_embed.patch_size``, torchvision's ``class_token`` and ``patch_size``; None for any other model."""
    embed = getattr(net, "patch_embed", None)
    if embed is not None and getattr(embed, "patch_size", None) is not None:
        return int(getattr(net, "num_prefix_tokens", 0)), pair(embed.patch_size)
    if isinstance(getattr(net, "class_token", None), torch.Tensor) and isinstance(getattr(net, "patch_size", None), int):
        return 1, pair(net.patch_size)
    return None


def fixed_size(net: nn.Module) -> tuple[int, int] | None:
    """The input size a ViT is fixed to (timm's strict patch embedding, torchvision's ``image_size``), if any."""
    embed = getattr(net, "patch_embed", None)
    if getattr(embed, "strict_img_size", False) and getattr(embed, "img_size", None):
        return pair(embed.img_size)
    if isinstance(getattr(net, "class_token", None), torch.Tensor) and isinstance(getattr(net, "image_size", None), int):
        return pair(net.image_size)
    return None


def pair(v: int | tuple | list) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def token_layout(gm: fx.GraphModule, source: Source, size: tuple[int, int], what: str) -> tuple[int, tuple[int, int]]:
    """How a (B, N, C) output lays out as a map: (prefix tokens, patch size). Declared by the library (checked
    against N), else read from the graph: the last (B, C, h, w) map on the main path before the tokens (the
    patch embedding) gives the grid, the tokens before it are the prefix. Anything else is a one-line error."""
    value = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    n_tokens, channels = shape(value)[1], shape(value)[2]
    if source.tokens is not None:
        prefix, patch = source.tokens
        grid = (size[0] // patch[0]) * (size[1] // patch[1])
        if n_tokens in (prefix + grid, grid):  # timm's mean pooling reads the patch tokens alone
            return (prefix if n_tokens == prefix + grid else 0), patch
        raise ValueError(f"{what}: its features are {n_tokens} tokens, not {prefix} prefix tokens + {grid} patches of "
                         f"{patch} on a {size} input, so they cannot be laid out as a map; return a feature map from "
                         "the model")
    maps = [n for n in dominators(gm, value)[:-1] if len(shape(n) or ()) == 4 and shape(n)[1] == channels]
    if maps:
        h, w = shape(maps[-1])[2:]
        if 0 <= n_tokens - h * w <= 8 and size[0] % h == 0 and size[1] % w == 0:
            return n_tokens - h * w, (size[0] // h, size[1] // w)
    raise ValueError(f"{what}: its features are tokens {shape(value)} whose grid cannot be read from the graph (no "
                     f"{channels}-channel patch map before them on every path); return a feature map from the model")


def trace_features(source: Source, task: TaskInfo, what: str) -> fx.GraphModule:
    """The source's graph with its merge points read and its output a (B, C, H, W) map."""
    gm = trace(source.root, what, tracer())
    size = source.size or task.image_size
    sample = torch.zeros(2, task.in_channels, *size)
    try:
        propagate(gm, sample)
    except Exception as exc:
        if sample.is_meta:
            raise  # an op the meta device lacks: the caller builds for real
        raise ValueError(f"{what}: a {tuple(sample.shape)} input does not run through it ({first_line(exc, 160)}); "
                         "check the image size the model takes") from None
    nhwc, tokens = source.nhwc, source.tokens
    if source.cut:
        gm, layout = cut_to_features(gm, what)
        nhwc = layout == "nhwc"
        if layout == "tokens":
            tokens = token_layout(gm, source, size, what)
    gm = read_flow(gm, sample, source.strip, nhwc)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    value, image = out.args[0], next(n for n in gm.graph.nodes if n.op == "placeholder")
    dims = len(shape(value) or ())
    if dims == 3 and tokens is not None:
        gm.add_module("to_map", TokenGrid(*tokens))
        last = ("to_map", (value, image))
    elif dims == 4 and nhwc:
        gm.add_module("to_map", ChannelsFirst())
        last = ("to_map", (value,))
    elif dims == 4:
        return gm
    else:
        raise ValueError(f"{what}: its features have shape {shape(value)}; bench's heads read a (B, C, H, W) map or "
                         "a timm ViT's tokens")
    with gm.graph.inserting_before(out):
        mapped = gm.graph.call_module(*last)
    out.args = (mapped,)
    gm.recompile()
    propagate(gm, sample)
    return gm


def tracer() -> FlowTracer:
    """timm's leaf modules and functions, and stochastic depth (timm's DropPath, torchvision's StochasticDepth) as
    leaves: traced through, its ``training`` flag would be frozen at trace time."""
    from timm.layers import DropPath, get_notrace_functions, get_notrace_modules
    from torchvision.ops import StochasticDepth

    return FlowTracer([*get_notrace_modules(), DropPath, StochasticDepth], get_notrace_functions())


def traced(task: TaskInfo, model: str = "timm:resnet18", checkpoint: str | None = None, **kwargs: Any) -> FlowModel:
    """Any timm / torchvision / smp model or nn.Module factory, its merge points read from its torch.fx graph."""
    what = f"model {model!r}"
    source = build_source(model, task, dict(kwargs))
    original = source.naming.state_dict(keep_vars=True)  # live tensors: a checkpoint loads into the traced model
    trunk = trace_features(source, task, what)
    out = next(n for n in trunk.graph.nodes if n.op == "output").args[0]
    flow_model = FlowModel(trunk, make_head(task, shape(out)[1]))
    flow_model.pretraining = source.pretraining
    if checkpoint:
        flow_model.pretraining = load_checkpoint(checkpoint, original, flow_model.state_dict(keep_vars=True))
    return flow_model


def check(params: dict[str, Any], where: str) -> None:
    """``bench check traced``'s preflight: the model built and its graph read once (a 32-pixel classification
    task, as conformance's), so a factory or reading error is one line before any test runs."""
    from bench.errors import BenchError

    try:
        traced(TaskInfo("classification", 3, image_size=(32, 32)), **params)
    except ValueError as exc:
        raise BenchError(f"{where}: {str(exc).strip().splitlines()[0]}") from None


traced.Params = TracedParams
traced.check = check
