"""Start from pretrained weights where the user has them; record what was loaded.

A local checkpoint is read safely (``torch.load(weights_only=True)``: tensors only, no pickled code),
from a plain state dict or one nested under ``state_dict``/``model`` (a DDP ``module.`` prefix is
dropped). Adapters keep the original modules, so the factories offer several namings — the
library's own (timm, torchvision, smp) and bench's — and the one that matches most keys is used.
Keys that do not match are reported in ``model.pretraining``, never silently dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError

Naming = Mapping[str, torch.Tensor]  # a module's state_dict(keep_vars=True): name -> the live tensor
SHOWN = 10  # key names listed per kind in the report


def read_state_dict(path: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise BenchError(f"{file}: checkpoint not found; give a local .pt/.pth file holding a state dict")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused (not weights-only) or a corrupt file
        raise BenchError(f"{file}: cannot load as a weights-only checkpoint ({type(exc).__name__}); re-save it "
                         "with torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchError(f"{file}: not a state dict of tensors; re-save it with torch.save(model.state_dict(), path)")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return file, state


def load_checkpoint(path: str | Path, *namings: Naming) -> dict[str, Any]:
    """Copy the checkpoint into the naming that matches most of its keys; return the report."""
    file, state = read_state_dict(path)
    target = max(namings, key=lambda n: len(state.keys() & n.keys()))
    matched = sorted(state.keys() & target.keys())
    if not matched:
        raise BenchError(f"{file}: none of its {len(state)} keys (e.g. {next(iter(state))!r}) name a parameter of "
                         "the model; check the architecture parameters")
    with torch.no_grad():
        for k in matched:
            if state[k].shape != target[k].shape:
                raise BenchError(f"{file}: {k} has shape {tuple(state[k].shape)}, the model "
                                 f"{tuple(target[k].shape)}; check the architecture parameters")
            target[k].copy_(state[k])
    missing = sorted(target.keys() - state.keys())
    unexpected = sorted(state.keys() - target.keys())
    return {"source": "checkpoint", "weights": str(file), "sha256": sha256(file), "loaded": len(matched),
            "missing": len(missing), "unexpected": len(unexpected), "missing_keys": missing[:SHOWN],
            "unexpected_keys": unexpected[:SHOWN]}


def sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def fetch_failed(what: str, exc: Exception) -> BenchError:
    """Hub weights could not be fetched (offline, unknown tag): say how to use a local file instead."""
    return BenchError(f"{what}: pretrained weights could not be fetched ({type(exc).__name__}: {exc}); download "
                      "them where the network allows and pass checkpoint: <local file>")
