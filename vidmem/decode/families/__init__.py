"""One adapter per VAE family, and the lookup that picks one for a VAE instance.

This package is the only place in vidmem that knows a family's internals.
"""

from __future__ import annotations

import logging

import torch

from ...errors import InvalidInputType
from .base import ClipFacts, DecodeRun, FamilyAdapter
from .cogvideox import CogVideoXAdapter
from .generic import GenericAdapter
from .hunyuan import HunyuanVideoAdapter
from .hunyuan15 import HunyuanVideo15Adapter
from .image import ImageVAEAdapter
from .ltx import LTXVideoAdapter
from .ltx2 import LTX2VideoAdapter
from .mochi import MochiAdapter
from .svd import SVDTemporalAdapter
from .wan import WanAdapter

log = logging.getLogger("vidmem")

#: Adapters tried in order; the generic fallback is not listed (it is the last resort).
ADAPTERS: list[type[FamilyAdapter]] = [WanAdapter, CogVideoXAdapter, HunyuanVideoAdapter,
                                       HunyuanVideo15Adapter, MochiAdapter,
                                       LTXVideoAdapter, LTX2VideoAdapter, SVDTemporalAdapter, ImageVAEAdapter]

_warned_generic: set[str] = set()


def register_adapter(adapter: type[FamilyAdapter]) -> None:
    """Add an adapter (e.g. for a VAE of your own) ahead of the built-in ones."""
    ADAPTERS.insert(0, adapter)


def supported_vaes() -> list[str]:
    return sorted({name for a in ADAPTERS for name in a.vae_classes})


def adapter_for(vae: torch.nn.Module, decode_kwargs: dict | None = None) -> FamilyAdapter:
    """The adapter for ``vae``; an unknown VAE with a ``decode`` gets the generic fallback."""
    for adapter in ADAPTERS:
        if adapter.matches(vae):
            return adapter(vae, decode_kwargs)
    if GenericAdapter.matches(vae):
        name = type(vae).__name__
        if name not in _warned_generic:
            _warned_generic.add(name)
            log.warning("vidmem has no adapter for %s; decoding it with overlapping temporal "
                        "windows (approximate at window seams). Supported: %s",
                        name, ", ".join(supported_vaes()))
        return GenericAdapter(vae, decode_kwargs)
    raise InvalidInputType(f"{type(vae).__name__} has no decode method; pass the pipeline's VAE")
