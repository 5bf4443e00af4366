"""Streaming, tiled VAE decode (see ``stream.py``) and its pure geometry (``geometry.py``)."""

from .families import adapter_for, register_adapter, supported_vaes
from .stream import DecodePlan, decode_latents, plan_decode

__all__ = ["DecodePlan", "adapter_for", "decode_latents", "plan_decode", "register_adapter",
           "supported_vaes"]
