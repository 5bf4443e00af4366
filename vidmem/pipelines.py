"""Per-pipeline knowledge: how a pipeline's ``output_type="latent"`` output becomes VAE input.

Why here: every video pipeline normalizes its latents differently before ``vae.decode`` (Wan
scales by per-channel mean/std, LTX packs and adds a decode timestep, CogVideoX permutes, ...).
To decode a clip ourselves we must undo that *exactly* as the pipeline's own ``__call__`` does,
operation for operation, or the frames drift from what the pipeline would have produced. This is
the only module that knows those rules; the VAE-side specifics live in ``decode/families``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class DecodeInput:
    """What the VAE decode needs: latents in the VAE's own ``decode`` layout plus its extras."""

    latents: torch.Tensor
    decode_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineRule:
    """How one pipeline family prepares latents for decode and what its frames look like."""

    family: str
    pipeline_classes: tuple[str, ...]
    to_vae_input: Callable[[Any, torch.Tensor], DecodeInput]
    #: pixel frames the family can produce are ``temporal * k + 1``.
    temporal_factor: int = 4
    #: height and width must be multiples of this (VAE factor x transformer patch).
    spatial_multiple: int = 16
    default_fps: int = 16


def _wan_to_vae_input(pipe: Any, latents: torch.Tensor) -> DecodeInput:
    # Mirrors WanPipeline.__call__: latents / (1 / std) + mean, in the VAE's dtype and device.
    vae = pipe.vae
    latents = latents.to(vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    latents_mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    latents_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device,
                                                                           latents.dtype)
    return DecodeInput(latents / latents_std + latents_mean)


RULES: list[PipelineRule] = [
    PipelineRule("wan", ("WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline",
                         "WanVACEPipeline", "SkyReelsV2Pipeline", "SkyReelsV2DiffusionForcingPipeline",
                         "SkyReelsV2ImageToVideoPipeline"),
                 _wan_to_vae_input, temporal_factor=4, default_fps=16),
]


def supported_pipelines() -> list[str]:
    return sorted(name for rule in RULES for name in rule.pipeline_classes)


def rule_for(pipe: Any) -> PipelineRule:
    """The rule for ``pipe``'s class; a clear error listing what is supported otherwise."""
    return rule_for_class(type(pipe).__name__)


def rule_for_class(name: str) -> PipelineRule:
    """The rule for a pipeline class name (checked before any weights are loaded)."""
    for rule in RULES:
        if name in rule.pipeline_classes:
            return rule
    raise ValueError(f"vidmem does not support {name} yet; supported pipelines: "
                     f"{', '.join(supported_pipelines())}")
