"""vidmem: long videos from diffusers video pipelines on accelerators (and CPUs) too small for them.

Public API (everything else is an implementation detail):

* :func:`render` - run a pipeline and stream its decoded frames into an MP4.
* :func:`decode_latents` / :func:`decode_to_video` - tiled, chunked, streaming VAE decode.
* :class:`VideoWriter` - a constant-memory, crash-safe streaming MP4 writer.
* :func:`tiny_pipeline` - a real diffusers pipeline with tiny random weights, built offline.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .decode import DecodePlan, decode_latents, plan_decode, register_adapter, supported_vaes
from .io import VideoWriter, WriterError, available_encoders, to_uint8_frames
from .memory import format_bytes, parse_bytes, peak_rss_bytes
from .offload import AppliedPlan, OffloadPlan, apply_plan, plan_offload
from .render import DecodeFailed, DecodeInterrupted, RenderReport, decode_to_video, render
from .tiny import tiny_pipeline

__version__ = "0.1.0"

__all__ = [
    "AppliedPlan",
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
    "peak_rss_bytes",
    "plan_decode",
    "register_adapter",
    "render",
    "save_checkpoint",
    "supported_vaes",
    "tiny_pipeline",
    "to_uint8_frames",
]
