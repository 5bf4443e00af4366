"""float8 weight storage (computed in the component's own dtype): its sizes, and installing it.

Why: a component stored in float8 takes about half its bf16 size, which can be the difference
between streaming its blocks every denoising step and keeping it whole on the device. diffusers'
layerwise casting does it: each Linear / Conv / Embedding layer keeps float8 weights and is cast
to the compute dtype just for its own forward (a pre-forward hook), then back. Norms, patch and
position embeddings and the first/last projections stay in the compute dtype
(``DEFAULT_SKIP_MODULES_PATTERN``), and so do a diffusers model's own exceptions
(``_keep_in_fp32_modules``, ``_skip_layerwise_casting_patterns``: Wan's condition embedder reads
its weights' dtype to cast its inputs). That is ``ModelMixin.enable_layerwise_casting``; other
modules (transformers text encoders) get ``apply_layerwise_casting`` with the defaults plus their
``_keep_in_fp32_modules`` (T5's ``wo``, which T5 also reads to cast its inputs). The
planner needs the sizes before anything is applied, so :func:`fp8_sizes` walks the module tree
with the same rule.

Cost: precision. Measured on the tiny Wan pipeline (``benchmarks/bench_plan.py``, RESULTS.md):
the planner uses float8 only when the user allows it and only to avoid block streaming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .introspect import module_tensors

STORAGE_DTYPE = torch.float8_e4m3fn


def _skip_patterns(module: torch.nn.Module) -> tuple[str, ...]:
    """The patterns ``enable_layerwise_casting`` skips for ``module`` (defaults plus a diffusers
    model's own)."""
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = tuple(DEFAULT_SKIP_MODULES_PATTERN)
    patterns += tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
    if _is_diffusers_model(module):
        patterns += tuple(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    return patterns


def _is_diffusers_model(module: torch.nn.Module) -> bool:
    from diffusers import ModelMixin

    return isinstance(module, ModelMixin)


def _cast_layer_types() -> tuple[type, ...]:
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    return tuple(_GO_LC_SUPPORTED_PYTORCH_LAYERS)


@dataclass(frozen=True)
class Fp8Sizes:
    """``stored_bytes``: the component on the device with float8 layers; ``upcast_bytes``: the
    largest layer's weights in the compute dtype, the extra memory while that layer runs."""

    stored_bytes: int
    upcast_bytes: int


def fp8_sizes(module: torch.nn.Module) -> Fp8Sizes:
    """Sizes of ``module`` under float8 layerwise casting (module docstring)."""
    patterns = _skip_patterns(module)
    layer_types = _cast_layer_types()
    cast: set[int] = set()
    largest = 0

    def walk(m: torch.nn.Module, prefix: str) -> None:
        nonlocal largest
        if prefix and any(re.search(p, prefix) for p in patterns):
            return
        if isinstance(m, layer_types):
            layer = 0
            for p in m.parameters(recurse=False):
                if p.is_floating_point() and id(p) not in cast:
                    cast.add(id(p))
                    layer += p.numel() * p.element_size()
            largest = max(largest, layer)
            return
        for name, child in m.named_children():
            walk(child, f"{prefix}.{name}" if prefix else name)

    walk(module, "")
    stored = 0
    seen: set[int] = set()
    for t in module_tensors(module):
        if id(t) in seen:
            continue
        seen.add(id(t))
        itemsize = 1 if id(t) in cast else t.element_size()
        stored += t.numel() * itemsize
    return Fp8Sizes(stored, largest)


def compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype the component computes in (a diffusers model's own ``dtype``, which skips the
    modules it keeps in float32; else its first floating parameter's)."""
    if _is_diffusers_model(module):
        return module.dtype
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def apply_fp8_storage(module: torch.nn.Module) -> None:
    """Store ``module``'s layers in float8 from now on (irreversible: reload the component to get
    its original weights back)."""
    dtype = compute_dtype(module)
    if _is_diffusers_model(module):
        module.enable_layerwise_casting(storage_dtype=STORAGE_DTYPE, compute_dtype=dtype)
        return
    from diffusers.hooks import apply_layerwise_casting

    apply_layerwise_casting(module, storage_dtype=STORAGE_DTYPE, compute_dtype=dtype,
                            skip_modules_pattern=_skip_patterns(module))
