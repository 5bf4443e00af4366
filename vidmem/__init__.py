"""vidmem: long videos from diffusers video pipelines on accelerators (and CPUs) too small for them.

Public API (everything else is an implementation detail):

* :func:`render` - run a pipeline and stream its decoded frames into an MP4.
* :func:`decode_latents` / :func:`decode_to_video` - tiled, chunked, streaming VAE decode.
* :class:`VideoWriter` - a constant-memory, crash-safe streaming MP4 writer.
* :func:`tiny_pipeline` - a real diffusers pipeline with tiny random weights, built offline.
* :func:`render_batch` / :func:`read_prompts` - many clips, divided among ``torch.distributed``
  ranks, resumable (:mod:`vidmem.batch`); one clip split over ranks: ``process_group=`` of
  :func:`render` and :func:`decode_to_video` (:mod:`vidmem.parallel`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# The public names, imported on first use (PEP 562): `vidmem --help`, `--version` and the CLI's
# usage errors answer without importing torch and diffusers (seconds on a small machine).
_EXPORTS = {
    "BatchReport": "batch", "ClipSpec": "batch", "parse_prompts": "batch",
    "read_prompts": "batch", "render_batch": "batch",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "DecodePlan": "decode", "decode_latents": "decode", "plan_decode": "decode",
    "register_adapter": "decode", "supported_vaes": "decode",
    "VideoWriter": "io", "WriterError": "io", "available_encoders": "io",
    "to_uint8_frames": "io",
    "format_bytes": "memory", "parse_bytes": "memory", "peak_rss_bytes": "memory",
    "AppliedPlan": "offload", "OffloadPlan": "offload", "apply_plan": "offload",
    "plan_offload": "offload",
    "DecodeFailed": "render", "DecodeInterrupted": "render", "RenderReport": "render",
    "decode_to_video": "render", "render": "render",
    "tiny_pipeline": "tiny",
}

if TYPE_CHECKING:
    from .batch import BatchReport, ClipSpec, parse_prompts, read_prompts, render_batch
    from .checkpoint import load_checkpoint, save_checkpoint
    from .decode import DecodePlan, decode_latents, plan_decode, register_adapter, supported_vaes
    from .io import VideoWriter, WriterError, available_encoders, to_uint8_frames
    from .memory import format_bytes, parse_bytes, peak_rss_bytes
    from .offload import AppliedPlan, OffloadPlan, apply_plan, plan_offload
    from .render import DecodeFailed, DecodeInterrupted, RenderReport, decode_to_video, render
    from .tiny import tiny_pipeline


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Importing the submodule ``vidmem.render`` would bind the package attribute ``render`` to
    the module, hiding the function of that name; the public name wins."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            return  # `vidmem.render` stays the function, loaded on first use
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "AppliedPlan",
    "BatchReport",
    "ClipSpec",
    "OffloadPlan",
    "apply_plan",
    "plan_offload",
    "DecodeFailed",
    "DecodeInterrupted",
    "DecodePlan",
    "RenderReport",
    "VideoWriter",
    "WriterError",
    "available_encoders",
    "decode_latents",
    "decode_to_video",
    "format_bytes",
    "load_checkpoint",
    "parse_bytes",
    "parse_prompts",
    "peak_rss_bytes",
    "plan_decode",
    "read_prompts",
    "register_adapter",
    "render",
    "render_batch",
    "save_checkpoint",
    "supported_vaes",
    "tiny_pipeline",
    "to_uint8_frames",
]
