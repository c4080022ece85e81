"""Start from pretrained weights where the user has them; record what was loaded.

A local checkpoint is loaded safely (``torch.load(weights_only=True)``), from a plain state dict or
one nested under ``state_dict``/``model``; keys that do not match are reported, not silently dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.errors import BenchError


def load_checkpoint(module: nn.Module, path: str, prefix: str = "") -> dict:
    file = Path(path).expanduser()
    if not file.is_file():
        raise BenchError(f"{file}: checkpoint not found; give a local .pt/.pth file (weights_only state dict)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or a corrupt file
        raise BenchError(f"{file}: cannot load as a weights-only checkpoint ({type(exc).__name__}); re-save it with "
                         "torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    result = module.load_state_dict(state, strict=False)
    loaded = len(state) - len(result.unexpected_keys)
    if loaded == 0:
        raise BenchError(f"{file}: no parameter names match the model; check the architecture or prefix")
    return {"source": "checkpoint", "path": str(file), "loaded": loaded, "missing": len(result.missing_keys),
            "unexpected": len(result.unexpected_keys)}
