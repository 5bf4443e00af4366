"""vidmem: long videos from diffusers video pipelines on accelerators (and CPUs) too small for them.

Public API (everything else is an implementation detail):

* Verbs: :func:`render` (run a pipeline, stream its decoded frames into an MP4),
  :func:`decode_latents` / :func:`decode_to_video` (tiled, chunked, streaming VAE decode),
  :func:`resume_decode` (finish a render from its kept latents), :func:`render_batch` /
  :func:`read_prompts` / :func:`parse_prompts` (many clips, divided among ``torch.distributed``
  ranks, resumable), :func:`plan_decode`, :func:`plan_offload` / :func:`apply_plan`,
  :func:`load_checkpoint` / :func:`save_checkpoint`, :func:`tiny_pipeline` (a real diffusers
  pipeline with tiny random weights, built offline).
* Option types: :class:`DecodeOptions`, :class:`WriterSettings` (frozen, validated when built);
  :class:`VideoWriter`, the streaming writer they configure.
* Reports and plans: :class:`RenderReport`, :class:`BatchReport`, :class:`DecodePlan`,
  :class:`OffloadPlan`, :class:`AppliedPlan`, :class:`ClipSpec`.
* Errors: :class:`VidmemError` and every class under it (:mod:`vidmem.errors`).

Byte sizes and peak memory: :mod:`vidmem.utils`. One clip split over ranks: ``process_group=``
of :func:`render` and :func:`decode_to_video` (:mod:`vidmem.parallel`).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .errors import (BudgetTooSmall, CheckpointDamaged, CheckpointError, CheckpointMissing,
                     DecodeFailed, DecodeInterrupted, GroupBroken, InvalidInput, InvalidInputType,
                     InvalidOptions, ModelNotFound, ModelUnreachable, OutputDirectoryMissing,
                     OutputError, OutputExists, OutputInUse, PromptsFileError, RankFailed,
                     PUBLIC_ERRORS, UnsupportedModel, VidmemError, WriterError)

__version__ = "0.1.0"

# The public names that need torch, imported on first use (PEP 562): `vidmem --help`,
# `--version` and the CLI's usage errors answer without importing torch and diffusers (seconds on
# a small machine). The errors above import nothing.
_LAZY = {
    "render": "rendering", "decode_to_video": "rendering", "RenderReport": "rendering",
    "resume_decode": "resume",
    "render_batch": "batch", "read_prompts": "batch", "parse_prompts": "batch",
    "BatchReport": "batch", "ClipSpec": "batch",
    "decode_latents": "decode", "plan_decode": "decode", "DecodePlan": "decode",
    "register_adapter": "decode", "supported_vaes": "decode",
    "DecodeOptions": "decode.options",
    "VideoWriter": "io", "WriterSettings": "io", "available_encoders": "io",
    "to_uint8_frames": "io",
    "plan_offload": "offload", "apply_plan": "offload", "OffloadPlan": "offload",
    "AppliedPlan": "offload",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "tiny_pipeline": "tiny",
}

_ERRORS = [cls.__name__ for cls in PUBLIC_ERRORS]

#: the one list of exported names.
__all__ = sorted(_LAZY) + _ERRORS

if TYPE_CHECKING:
    from .batch import BatchReport, ClipSpec, parse_prompts, read_prompts, render_batch
    from .checkpoint import load_checkpoint, save_checkpoint
    from .decode import DecodePlan, decode_latents, plan_decode, register_adapter, supported_vaes
    from .decode.options import DecodeOptions
    from .io import VideoWriter, WriterSettings, available_encoders, to_uint8_frames
    from .offload import AppliedPlan, OffloadPlan, apply_plan, plan_offload
    from .rendering import RenderReport, decode_to_video, render
    from .resume import resume_decode
    from .tiny import tiny_pipeline


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule, on first use
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'vidmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
