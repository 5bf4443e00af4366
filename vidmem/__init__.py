"""vidmem: long videos from diffusers video pipelines on accelerators (and CPUs) too small for them.

Public API (everything else is an implementation detail):

* :func:`render` - run a pipeline and stream its decoded frames into an MP4.
* :func:`decode_latents` / :func:`decode_to_video` - tiled, chunked, streaming VAE decode.
* :class:`VideoWriter` - a constant-memory, crash-safe streaming MP4 writer.
* :func:`tiny_pipeline` - a real diffusers pipeline with tiny random weights, built offline.
"""

from .decode import DecodePlan, decode_latents, plan_decode, register_adapter, supported_vaes
from .memory import format_bytes, parse_bytes, peak_rss_bytes
from .tiny import tiny_pipeline

__version__ = "0.1.0"

__all__ = [
    "DecodePlan",
    "decode_latents",
    "format_bytes",
    "parse_bytes",
    "peak_rss_bytes",
    "plan_decode",
    "register_adapter",
    "supported_vaes",
    "tiny_pipeline",
]
