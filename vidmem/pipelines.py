"""Per-pipeline knowledge: how a pipeline's ``output_type="latent"`` output becomes VAE input.

Why here: every video pipeline normalizes its latents differently before ``vae.decode`` (Wan
scales by per-channel mean/std, LTX packs and adds a decode timestep and noise, CogVideoX permutes
and pads, SVD folds frames into the batch, ...). To decode a clip ourselves we must undo that
*exactly* as the pipeline's own ``__call__`` does, operation for operation, or the frames drift
from what the pipeline would have produced. This is the only module that knows those rules; the
VAE-side specifics live in ``decode/families``. Each rule cites the diffusers code it mirrors.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .errors import InvalidOptions, UnsupportedModel

@dataclass
class DecodeInput:
    """What the VAE decode needs: latents in the VAE's own ``decode`` layout plus its extras."""

    latents: torch.Tensor
    decode_kwargs: dict[str, Any] = field(default_factory=dict)


ToVaeInput = Callable[[Any, torch.Tensor, dict], DecodeInput]
"""``(pipe, latents from output_type="latent", the call's bound arguments) -> DecodeInput``."""


@dataclass(frozen=True)
class PipelineRule:
    """How one pipeline family prepares latents for decode and what its frames look like."""

    family: str
    pipeline_classes: tuple[str, ...]
    to_vae_input: ToVaeInput
    #: pixel frames the family can produce are ``temporal_factor * k + 1`` (1: any count).
    temporal_factor: int = 4
    #: height and width must be multiples of this (VAE factor x transformer patch).
    spatial_multiple: int = 16
    default_fps: int = 16
    #: image-to-video: the call needs an ``image``.
    needs_image: bool = False

    def frames_error(self, frames: int) -> str | None:
        """Why ``frames`` cannot be produced by this family (with the nearest valid counts)."""
        k = self.temporal_factor
        if k <= 1 or (frames - 1) % k == 0:
            return None
        lower = max(1, (frames - 1) // k * k + 1)
        return (f"{frames} frames is not valid for {self.family}: it needs {k}k+1 frames; "
                f"nearest valid: {lower} or {lower + k}")


def call_arguments(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``pipe.__call__`` will see: ``kwargs`` plus the signature's defaults.

    Rules need values the caller may have left to the pipeline (LTX's ``height``/``num_frames``
    to unpack its sequence latents, its ``decode_timestep``); reading them from the signature
    keeps them equal to what the pipeline used."""
    signature = inspect.signature(pipe.__call__)
    try:
        bound = signature.bind_partial(**kwargs)
    except TypeError:
        params = signature.parameters
        unknown = sorted(set(kwargs) - set(params))
        names = ", ".join(n for n in params if n != "kwargs")
        raise InvalidOptions(f"{type(pipe).__name__} takes no argument(s) {', '.join(unknown)}; it "
                         f"takes: {names}") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.update(args.pop("kwargs", None) or {})
    return args


def _wan(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # WanPipeline.__call__: latents.to(vae.dtype); latents / (1 / std) + mean.
    vae = pipe.vae
    latents = latents.to(vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device,
                                                                        latents.dtype)
    return DecodeInput(latents / inv_std + mean)


def _cogvideox(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # CogVideoXPipeline.__call__: drop the frames padded for patch_size_t (CogVideoX 1.5), then
    # decode_latents: (B, T, C, h, w) -> (B, C, T, h, w), times 1 / scaling_factor.
    num_frames = call.get("num_frames") or pipe.transformer.config.sample_frames
    latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    extra = max(0, latents.shape[1] - latent_frames)
    latents = latents[:, extra:].permute(0, 2, 1, 3, 4)
    return DecodeInput(1 / pipe.vae_scaling_factor_image * latents)


def _ltx(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # LTXPipeline.__call__: unpack the token sequence, denormalize with the VAE's mean/std,
    # cast to the text embeddings' dtype; a timestep-conditioned VAE gets decode_timestep and
    # latents mixed with noise drawn from the caller's generator (whose state after denoising is
    # exactly where the pipeline would draw it).
    from diffusers.utils.torch_utils import randn_tensor

    vae = pipe.vae
    latent_frames = (call["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1
    h = call["height"] // pipe.vae_spatial_compression_ratio
    w = call["width"] // pipe.vae_spatial_compression_ratio
    latents = pipe._unpack_latents(latents, latent_frames, h, w, pipe.transformer_spatial_patch_size,
                                   pipe.transformer_temporal_patch_size)
    latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std,
                                        vae.config.scaling_factor)
    latents = latents.to(pipe.transformer.dtype)  # prompt_embeds' dtype
    kwargs: dict[str, Any] = {}
    if vae.config.timestep_conditioning:
        batch = latents.shape[0]
        device = latents.device
        noise = randn_tensor(latents.shape, generator=call.get("generator"), device=device,
                             dtype=latents.dtype)
        timestep = call.get("decode_timestep", 0.0)
        timestep = timestep if isinstance(timestep, list) else [timestep] * batch
        scale = call.get("decode_noise_scale")
        if scale is None:
            scale = timestep
        elif not isinstance(scale, list):
            scale = [scale] * batch
        temb = torch.tensor(timestep, device=device, dtype=latents.dtype)
        scale_t = torch.tensor(scale, device=device, dtype=latents.dtype)[:, None, None, None, None]
        latents = (1 - scale_t) * latents + scale_t * noise
        kwargs["temb"] = temb
    return DecodeInput(latents.to(vae.dtype), kwargs)


def _mochi(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # MochiPipeline.__call__: latents * std / scaling_factor + mean when the VAE config has them.
    cfg = pipe.vae.config
    if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
        shape = (1, latents.shape[1], 1, 1, 1)
        mean = torch.tensor(cfg.latents_mean).view(shape).to(latents.device, latents.dtype)
        std = torch.tensor(cfg.latents_std).view(shape).to(latents.device, latents.dtype)
        return DecodeInput(latents * std / cfg.scaling_factor + mean)
    return DecodeInput(latents / cfg.scaling_factor)


def _hunyuan(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # HunyuanVideo(1.5)Pipeline.__call__: latents.to(vae.dtype) / scaling_factor.
    return DecodeInput(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor)


def _svd(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # StableVideoDiffusionPipeline.decode_latents: (B, F, C, h, w) -> (B * F, C, h, w), times
    # 1 / scaling_factor; the VAE is told the frames per video (``num_frames``).
    frames = latents.shape[1]
    latents = 1 / pipe.vae.config.scaling_factor * latents.flatten(0, 1)
    return DecodeInput(latents, {"num_frames": frames})


def _animatediff(pipe: Any, latents: torch.Tensor, call: dict) -> DecodeInput:
    # AnimateDiffPipeline.decode_latents: 1 / scaling_factor, then frames into the batch.
    latents = 1 / pipe.vae.config.scaling_factor * latents
    b, c, t, h, w = latents.shape
    return DecodeInput(latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))


RULES: list[PipelineRule] = [
    PipelineRule("wan", ("WanPipeline", "WanVideoToVideoPipeline", "WanVACEPipeline",
                         "SkyReelsV2Pipeline", "SkyReelsV2DiffusionForcingPipeline"),
                 _wan, temporal_factor=4, default_fps=16),
    PipelineRule("wan-i2v", ("WanImageToVideoPipeline", "SkyReelsV2ImageToVideoPipeline"),
                 _wan, temporal_factor=4, default_fps=16, needs_image=True),
    PipelineRule("cogvideox", ("CogVideoXPipeline", "CogVideoXVideoToVideoPipeline"), _cogvideox,
                 temporal_factor=4, default_fps=8),
    PipelineRule("cogvideox-i2v", ("CogVideoXImageToVideoPipeline",), _cogvideox,
                 temporal_factor=4, default_fps=8, needs_image=True),
    PipelineRule("ltx", ("LTXPipeline",), _ltx, temporal_factor=8, spatial_multiple=32,
                 default_fps=24),
    PipelineRule("ltx-i2v", ("LTXImageToVideoPipeline",), _ltx, temporal_factor=8,
                 spatial_multiple=32, default_fps=24, needs_image=True),
    PipelineRule("mochi", ("MochiPipeline",), _mochi, temporal_factor=6, default_fps=30),
    PipelineRule("hunyuanvideo", ("HunyuanVideoPipeline", "HunyuanSkyreelsImageToVideoPipeline"),
                 _hunyuan, temporal_factor=4, default_fps=24),
    PipelineRule("hunyuanvideo15", ("HunyuanVideo15Pipeline",), _hunyuan, temporal_factor=4,
                 default_fps=24),
    PipelineRule("svd", ("StableVideoDiffusionPipeline",), _svd, temporal_factor=1,
                 spatial_multiple=8, default_fps=7, needs_image=True),
    PipelineRule("animatediff", ("AnimateDiffPipeline", "AnimateDiffSDXLPipeline",
                                 "AnimateDiffSparseControlNetPipeline"),
                 _animatediff, temporal_factor=1, spatial_multiple=8, default_fps=8),
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
    raise UnsupportedModel(f"vidmem does not support {name} yet; supported pipelines: "
                     f"{', '.join(supported_pipelines())}")


def expected_clip_size(pipe: Any, call: dict[str, Any]) -> tuple[int, int, int] | None:
    """``(frames, height, width)`` the call will produce, from its arguments or, where it leaves
    them to the pipeline (``None``), the component configs the pipeline itself falls back to
    (Mochi's ``default_height``, CogVideoX's transformer sample size, SVD's UNet frame count,
    AnimateDiff's UNet sample size). ``None`` when some of it cannot be known before running."""
    def config(module_name: str, key: str) -> Any:
        module = getattr(pipe, module_name, None)
        return getattr(getattr(module, "config", None), key, None)

    frames = call.get("num_frames") or config("transformer", "sample_frames") \
        or config("unet", "num_frames")
    sizes = []
    for name in ("height", "width"):
        value = call.get(name) or getattr(pipe, f"default_{name}", None)
        if value is None and config("transformer", f"sample_{name}") is not None:
            factor = getattr(pipe, "vae_scale_factor_spatial", None)
            value = config("transformer", f"sample_{name}") * factor if factor else None
        if value is None and config("unet", "sample_size") is not None:
            factor = getattr(pipe, "vae_scale_factor", None)
            size = config("unet", "sample_size")
            size = size if isinstance(size, int) else size[0 if name == "height" else 1]
            value = size * factor if factor else None
        sizes.append(value)
    if not all(isinstance(v, int) and v > 0 for v in (frames, *sizes)):
        return None
    return int(frames), int(sizes[0]), int(sizes[1])


def clip_latents(vae: torch.nn.Module, frames: int, height: int,
                 width: int) -> torch.Tensor | None:
    """Meta latents, in ``vae``'s ``decode`` layout, of a clip of ``frames`` x ``height`` x
    ``width`` pixels (``None`` for VAEs whose factors are only known by decoding)."""
    from .decode.families import adapter_for
    from .decode.families.generic import GenericAdapter

    adapter = adapter_for(vae)
    if isinstance(adapter, GenericAdapter):
        return None  # its factors are probed by decoding: nothing to know beforehand
    tm, sf = adapter.time_map, adapter.spatial_factor
    t_lat = (frames - 1) // tm.factor + 1 if tm.causal_first_frame else -(-frames // tm.factor)
    param = next(vae.parameters(), None)
    latents = adapter.example_latents(t_lat, height // sf, width // sf)
    return latents.to(param.dtype) if param is not None else latents


def expected_vae_latents(pipe: Any, call: dict[str, Any]) -> torch.Tensor | None:
    """Meta latents of the shape the decode will receive (the VAE's ``decode`` layout), for
    validating decode options and sizing the checkpoint before denoising; ``None`` if unknown."""
    size = expected_clip_size(pipe, call)
    vae = getattr(pipe, "vae", None)
    if size is None or vae is None:
        return None
    return clip_latents(vae, *size)
