"""Refuse, before any weights are loaded, the renders that cannot work (issue #26, items 2 and 3).

Why: an impossible request used to be discovered late and badly. A 65536x65536 render ran for
minutes and was killed by the OOM killer with no message; 4101 frames on a Wan transformer
failed after denoising began with ``RuntimeError: shape '[1026, 1, 1, -1]' is invalid for input
of size 4096``; and a tiny clip was refused on a small disk because a fixed 16 MiB margin was
counted as "the latent checkpoint".

This module only computes and checks; it imports no part of the render path that runs it:

* **Memory.** :func:`estimate_render_buffers` sizes the buffers a render cannot avoid (the
  latents, one decoded chunk, the writer's queued copies, the checkpoint) from the VAE's config
  alone (a meta-device skeleton is enough); :func:`check_render_fits` compares them with the host
  memory available (:func:`available_host_bytes`) and the device memory free, and raises
  :class:`~vidmem.errors.BudgetTooSmall` naming the numbers.
* **Disk.** :func:`checkpoint_bytes` is the real size of the safetensors checkpoint
  (:func:`vidmem.checkpoint.save_checkpoint`: latents, RNG states, decode tensors, header) and
  :func:`disk_margin_bytes` the room the video's first chunk needs beyond it, in place of a fixed
  16 MiB.
* **Model reach.** :func:`frames_limit` / :func:`max_frames` / :func:`frames_error` (and
  :func:`size_error`) read the limits a transformer's config really imposes (Wan's rotary
  table; CogVideoX's learned positional embeddings) and name the largest valid count.

The decoder's own activations are not counted: they depend on the decoder and the tile size
(the decode's tile planner bounds them). The buffers here are a floor: a render that does not
fit them cannot succeed whatever its tiling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from .errors import BudgetTooSmall, InvalidOptions
from .memory import format_bytes

# --- host memory ------------------------------------------------------------------------------


def available_host_bytes() -> int | None:
    """Host memory a new allocation can get without swapping: ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), else psutil's ``available`` if psutil is installed, else
    ``None`` (unknown: the host check is skipped)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - an unsupported platform: unknown
        return None


# --- the checkpoint on disk -------------------------------------------------------------------

#: Bytes of ``torch.cuda.get_rng_state()`` (the Philox generator's seed and offset, two 64-bit
#: integers: ``CUDAGeneratorImpl::get_state`` in torch). The CPU state is measured at run time.
CUDA_RNG_STATE_BYTES = 16

#: Headroom for header fields whose length is only known when the file is written (the model
#: path, ``extra``, plain decode arguments): added to the header the prediction builds.
HEADER_SLACK_BYTES = 2048

#: safetensors' dtype names (``Dtype`` in its Rust source), for sizing the header.
_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def _cpu_rng_state_bytes() -> int:
    return int(torch.get_rng_state().numel())


def checkpoint_bytes(latent_shape: tuple[int, ...] | torch.Size, dtype: torch.dtype,
                     decode_kwargs_bytes: int = 0, *, cuda_rng: bool | None = None,
                     model: str | None = None) -> int:
    """The size on disk of the latent checkpoint :func:`vidmem.checkpoint.save_checkpoint` will
    write for latents of ``latent_shape`` and ``dtype``: the latents' bytes, the RNG states
    (the CPU one, and the CUDA one when ``cuda_rng``; ``None``: when CUDA is available), the
    tensor arguments of the decode (``decode_kwargs_bytes``, e.g. LTX's timestep), and the
    safetensors header (8-byte length, the JSON of tensor entries and metadata, padding).

    The header is built as safetensors builds it, with the metadata's fixed fields at their
    real lengths (SHA-256, dtype names) and :data:`HEADER_SLACK_BYTES` for the fields of unknown
    length; the prediction is an upper bound within a few KiB of the file (see the tests).
    """
    shape = [int(s) for s in latent_shape]
    if any(s < 0 for s in shape):
        raise InvalidOptions(f"latent shape {tuple(shape)} has a negative dimension")
    element = torch.empty((), dtype=dtype).element_size()
    latents = math.prod(shape) * element
    if cuda_rng is None:
        cuda_rng = torch.cuda.is_available()
    tensors: dict[str, tuple[str, list[int], int]] = {
        "latents": (_SAFETENSORS_DTYPES.get(dtype, "F32"), shape, latents),
        "rng_state.cpu": ("U8", [_cpu_rng_state_bytes()], _cpu_rng_state_bytes()),
    }
    if cuda_rng:
        tensors["rng_state.cuda"] = ("U8", [CUDA_RNG_STATE_BYTES], CUDA_RNG_STATE_BYTES)
    if decode_kwargs_bytes:
        tensors["decode_kwargs.timestep"] = ("F32", [decode_kwargs_bytes // 4],
                                             int(decode_kwargs_bytes))
    header: dict[str, Any] = {"__metadata__": {
        "format": "vidmem-latents", "version": "2", "model": model or "", "family": "",
        "fps": repr(16.0), "frames": "", "dtype": str(dtype).removeprefix("torch."),
        "decode_kwargs": "{}", "extra": "{}", "vae_dtype": str(dtype).removeprefix("torch."),
        "sha256": "0" * 64}}
    offset = 0
    for name, (code, tensor_shape, nbytes) in tensors.items():
        header[name] = {"dtype": code, "shape": tensor_shape,
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = len(json.dumps(header, separators=(",", ":")).encode()) + HEADER_SLACK_BYTES
    text += -text % 8  # safetensors pads the header to a multiple of 8 bytes
    return 8 + text + offset


#: The least room kept beyond the checkpoint: the MP4's and the partial stream's headers.
MIN_DISK_MARGIN_BYTES = 256 << 10


def disk_margin_bytes(chunk_frames: int, height: int, width: int) -> int:
    """Free space an output directory needs beyond the checkpoint (in place of a fixed 16 MiB):
    the video's first chunk at its raw RGB size (3 bytes a pixel: what a chunk of uint8 frames
    holds, and more than the writer's encoders produce for it, lossy or lossless H.264 RGB;
    measured on the tiny model's noise-like frames, the hardest to compress: lossless at about
    0.7x raw), plus :data:`MIN_DISK_MARGIN_BYTES` for the containers' headers. It scales with
    the clip: 418 KiB for 9 frames of 64x96, 19.7 MiB for a 17-frame chunk of 480x832."""
    raw = max(0, int(chunk_frames)) * max(0, int(height)) * max(0, int(width)) * 3
    return MIN_DISK_MARGIN_BYTES + raw


# --- the render's unavoidable buffers -----------------------------------------------------------


@dataclass(frozen=True)
class RenderBuffers:
    """Byte counts of the buffers a render of one clip cannot avoid (see
    :func:`estimate_render_buffers`), and where they live.

    ``host_parts`` / ``device_parts``: ``{what: bytes}`` at the peak of host / device memory
    (the larger of the checkpoint's save and the decode); their sums are ``host_bytes`` /
    ``device_bytes``.
    """

    frames: int
    height: int
    width: int
    latent_shape: tuple[int, ...]
    latent_dtype: torch.dtype
    #: the denoised latents, as the VAE's decode takes them.
    latents: int
    #: the checkpoint file (0: no checkpoint is written); also what the output claim reserves.
    checkpoint: int
    #: free space wanted beyond the checkpoint (:func:`disk_margin_bytes` of the largest chunk).
    disk_margin: int
    #: one delivered chunk: ``(T, H, W, 3)`` uint8.
    chunk_uint8: int
    #: the float32 ``(B, 3, T, H, W)`` buffer one window decodes (and blends) into, with the
    #: blend's weights and, for a VAE not in float32, its own output before ``.float()``.
    chunk_float: int
    #: one tile's temporaries while it is blended in (its float32 pixels and ``pixels * mask``;
    #: 0 untiled).
    tiles: int
    #: the writer's copies: ``queue_size`` waiting plus the one being encoded.
    writer_queue: int
    #: the latents' checksum copy made while the checkpoint is saved (0 without a checkpoint).
    checksum_copy: int
    #: where the decode runs: ``"cpu"`` or ``"cuda"``.
    decode_device: str
    chunk_frames: int
    tile_count: int
    host_parts: Mapping[str, int] = field(repr=False, default_factory=dict)
    device_parts: Mapping[str, int] = field(repr=False, default_factory=dict)

    @property
    def host_bytes(self) -> int:
        return sum(self.host_parts.values())

    @property
    def device_bytes(self) -> int:
        return sum(self.device_parts.values())

    @property
    def disk_bytes(self) -> int:
        """Free space the output directory needs: the checkpoint plus the margin."""
        return self.checkpoint + self.disk_margin

    def describe(self) -> str:
        return (f"a {self.width}x{self.height} clip of {self.frames} frames")


def _parts(**parts: int) -> dict[str, int]:
    return {name.replace("_", " "): n for name, n in parts.items() if n}


def estimate_render_buffers(vae: torch.nn.Module, num_frames: int, height: int, width: int, *,
                            latent_dtype: torch.dtype | None = None,
                            chunk_frames: int | None = None, overlap_frames: int | None = None,
                            tile_size: int | None = None, tile_overlap: int | None = None,
                            decode_kwargs: dict | None = None,
                            whole_clip_norm: bool | str | None = None, checkpoint: bool = True,
                            queue_size: int = 2, decode_device: str | torch.device | None = None,
                            ) -> RenderBuffers | None:
    """The unavoidable buffers of rendering ``num_frames`` x ``height`` x ``width`` pixels through
    ``vae`` (a loaded VAE or a meta-device skeleton from its config: no weights are read).

    The latent shape comes from the VAE's factors (:func:`vidmem.pipelines.clip_latents`), the
    chunk and tile sizes from the decode plan of the same options
    (:func:`vidmem.decode.stream.plan_decode`; invalid options raise there, as they would at
    the decode). ``latent_dtype``: the latents' dtype (default: the VAE's, which the decode
    takes). ``checkpoint``: whether the render saves its latents first. ``queue_size``: the
    writer's (:class:`vidmem.VideoWriter`). ``decode_device``: where the decode will run
    (default: the VAE's device; a meta skeleton counts as ``"cpu"``).

    Host peak: on a CPU decode, the latents plus one window's float32 buffer, its tiles, the
    uint8 chunk and the writer's copies; on CUDA, the pinned staging chunk and the writer's
    copies (the device holds the latents, the float32 buffer, the tiles and the uint8 chunk).
    Saving the checkpoint holds the latents on the host with their checksum copy; the peak is
    the larger of the two phases.

    ``None`` for a VAE whose factors are only known by decoding (the generic adapter).
    """
    from .decode.families import adapter_for
    from .decode.families.generic import GenericAdapter
    from .decode.stream import _vae_device_dtype, plan_decode
    from .pipelines import clip_latents

    for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise InvalidOptions(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(queue_size, int) or queue_size < 1:
        raise InvalidOptions(f"queue_size must be at least 1, got {queue_size!r}")
    adapter = adapter_for(vae, decode_kwargs)
    if isinstance(adapter, GenericAdapter):
        return None
    meta = clip_latents(vae, num_frames, height, width)
    if meta is None:
        return None
    vae_device, vae_dtype = _vae_device_dtype(vae)
    dtype = latent_dtype or meta.dtype
    meta = torch.empty(meta.shape, dtype=dtype, device="meta")
    plan = plan_decode(vae, meta, chunk_frames=chunk_frames, overlap_frames=overlap_frames,
                       tile_size=tile_size, tile_overlap=tile_overlap,
                       decode_kwargs=decode_kwargs, whole_clip_norm=whole_clip_norm,
                       adapter=adapter)
    device = torch.device(decode_device) if decode_device is not None else vae_device
    on_cuda = device.type == "cuda"

    element = meta.element_size()
    latents = meta.numel() * element
    h, w = plan.height, plan.width
    decoded = max(wd.stop - wd.offset for wd in plan.windows)  # frames one window decodes
    kept = max(plan.chunk_frames, default=0) + plan.blend_frames  # frames one chunk hands out
    vae_element = torch.empty((), dtype=vae_dtype).element_size()
    not_fp32 = vae_dtype != torch.float32
    tiled = len(plan.tiles) > 1
    chunk_float = 3 * decoded * h * w * 4
    if tiled:
        chunk_float += h * w * 4  # the blend's weights
        tile_px = max(t.py.size * t.px.size for t in plan.tiles)
        tiles = 3 * decoded * tile_px * (4 * 2 + (vae_element if not_fp32 else 0))
    else:
        tiles = 0
        if not_fp32:
            chunk_float += 3 * decoded * h * w * vae_element
    chunk_uint8 = kept * h * w * 3
    writer = (queue_size + 1) * chunk_uint8
    ckpt = checkpoint_bytes(meta.shape, dtype, cuda_rng=on_cuda) if checkpoint else 0
    checksum = latents if checkpoint else 0

    save_host = _parts(latents=latents, checksum_copy=checksum) if checkpoint else {}
    if on_cuda:
        decode_host = _parts(staging_chunk=chunk_uint8, writer_queue=writer)
        device_parts = _parts(latents=latents, one_decoded_chunk=chunk_float,
                              tile_buffers=tiles, uint8_chunk=chunk_uint8)
    else:
        decode_host = _parts(latents=latents, one_decoded_chunk=chunk_float,
                             tile_buffers=tiles, uint8_chunk=chunk_uint8, writer_queue=writer)
        device_parts = {}
    host_parts = max((save_host, decode_host), key=lambda p: sum(p.values()))
    return RenderBuffers(
        frames=plan.frames, height=h, width=w, latent_shape=tuple(meta.shape),
        latent_dtype=dtype, latents=latents, checkpoint=ckpt,
        disk_margin=disk_margin_bytes(kept, h, w), chunk_uint8=chunk_uint8,
        chunk_float=chunk_float, tiles=tiles, writer_queue=writer, checksum_copy=checksum,
        decode_device="cuda" if on_cuda else "cpu", chunk_frames=kept,
        tile_count=len(plan.tiles), host_parts=host_parts, device_parts=device_parts)


def _breakdown(parts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {format_bytes(n)}" for name, n in parts.items())


def render_fits_error(buffers: RenderBuffers, *, host_available: int | None = None,
                      device_free: int | None = None) -> str | None:
    """Why ``buffers`` cannot fit (one line, with the numbers), or ``None``: the message of
    :func:`check_render_fits`. ``host_available`` ``None``: :func:`available_host_bytes`
    (unknown: not checked); ``device_free`` ``None``: the device is not checked."""
    if host_available is None:
        host_available = available_host_bytes()
    problems = []
    if host_available is not None and buffers.host_bytes > host_available:
        problems.append(
            f"needs at least {format_bytes(buffers.host_bytes)} of host memory for its "
            f"unavoidable buffers ({_breakdown(buffers.host_parts)}); this machine has "
            f"{format_bytes(host_available)} available")
    if device_free is not None and buffers.device_parts and buffers.device_bytes > device_free:
        problems.append(
            f"needs at least {format_bytes(buffers.device_bytes)} of device memory for its "
            f"unavoidable buffers ({_breakdown(buffers.device_parts)}); the device has "
            f"{format_bytes(device_free)} free")
    if not problems:
        return None
    return (f"{buffers.describe()} " + "; and ".join(problems) + ": choose a smaller size or "
            f"fewer frames" + ("" if buffers.tile_count > 1 or buffers.chunk_frames <= 1
                               else " (or a smaller --chunk-frames)"))


def check_render_fits(buffers: RenderBuffers, *, host_available: int | None = None,
                      device_free: int | None = None) -> None:
    """Raise :class:`~vidmem.errors.BudgetTooSmall` when the render's unavoidable buffers exceed
    the host memory available or the device memory free (see :func:`render_fits_error`)."""
    message = render_fits_error(buffers, host_available=host_available, device_free=device_free)
    if message:
        raise BudgetTooSmall(message)


# --- the transformer's reach --------------------------------------------------------------------

#: Transformers whose rotary table is ``WanRotaryPosEmbed``: ``rope_max_seq_len`` rows per axis,
#: sliced ``freqs[:ppf]`` and viewed as ``(ppf, 1, 1, -1)``, which fails past the table
#: (diffusers ``models/transformers/transformer_wan.py``, ``WanRotaryPosEmbed.forward``).
WAN_ROPE_CLASSES = ("WanTransformer3DModel", "WanVACETransformer3DModel",
                    "WanAnimateTransformer3DModel", "SanaVideoTransformer3DModel")
#: Transformers checked in the installed diffusers whose positions are computed, not looked up
#: (no hard limit on frames): LTX (``LTXVideoRotaryPosEmbed``: scaled coordinates),
#: HunyuanVideo / 1.5 (``torch.arange`` grids), Mochi (``MochiRoPE``: coordinates; its
#: ``max_sequence_length`` is unused), CogVideoX (rotary from the grid; its sincos table is
#: recomputed for another frame count).
NO_FRAME_LIMIT_CLASSES = ("LTXVideoTransformer3DModel", "HunyuanVideoTransformer3DModel",
                          "HunyuanVideo15Transformer3DModel", "MochiTransformer3DModel",
                          "CogVideoXTransformer3DModel")


@dataclass(frozen=True)
class FramesLimit:
    """The most latent frames a transformer can take, and why (for messages)."""

    latent_frames: int
    #: e.g. ``"the WanTransformer3DModel's rotary table (rope_max_seq_len=1024)"``.
    reason: str


def _config_and_class(model_or_config: Any, class_name: str | None) -> tuple[Mapping, str | None]:
    """``(config mapping, class name)`` from a module (or pipeline), its ``config``, or a dict
    (``config.json``; its ``_class_name`` names the class)."""
    obj = model_or_config
    if hasattr(obj, "transformer") and not isinstance(obj, Mapping):
        obj = obj.transformer  # a pipeline: its (first) transformer
    if isinstance(obj, torch.nn.Module):
        class_name = class_name or type(obj).__name__
        obj = obj.config
    config = dict(obj) if isinstance(obj, Mapping) else dict(vars(obj))
    return config, class_name or config.get("_class_name")


def _patch_t(config: Mapping) -> int | None:
    patch = config.get("patch_size")
    if isinstance(patch, (list, tuple)) and len(patch) == 3:
        return int(patch[0])
    return None


def _is_wan_rope(config: Mapping, class_name: str | None) -> bool:
    if class_name is not None:
        return class_name in WAN_ROPE_CLASSES
    # no class name (a bare config): the Wan rotary table's own fields
    return "rope_max_seq_len" in config and _patch_t(config) is not None


def frames_limit(model_or_config: Any, *, class_name: str | None = None) -> FramesLimit | None:
    """The transformer's hard limit on latent frames, read from its config, or ``None`` where
    its family has none.

    ``model_or_config``: a transformer (a meta-device skeleton is enough), a pipeline (its
    ``transformer``), the ``config`` of either, or a ``config.json`` dict. ``class_name``
    names the class where the config alone does not (``_class_name``).

    Wan (and the transformers sharing its ``WanRotaryPosEmbed``): the rotary table has
    ``rope_max_seq_len`` rows per axis, indexed by the latent frames after temporal patching
    (``num_frames // p_t``): at most ``rope_max_seq_len * p_t`` latent frames.
    """
    config, name = _config_and_class(model_or_config, class_name)
    if _is_wan_rope(config, name):
        rows = int(config.get("rope_max_seq_len", 1024))  # diffusers' default
        p_t = _patch_t(config) or 1
        label = name or "transformer"
        return FramesLimit(rows * p_t, f"the {label}'s rotary table (rope_max_seq_len={rows})"
                                       + (f", {p_t} latent frames a patch" if p_t > 1 else ""))
    return None


def latent_frames_for(num_frames: int, temporal_factor: int = 4,
                      causal_first_frame: bool = True) -> int:
    """Latent frames of ``num_frames`` pixel frames (``(n - 1) // k + 1`` for a causal VAE,
    ``ceil(n / k)`` otherwise), as the pipelines compute them."""
    if causal_first_frame:
        return (num_frames - 1) // temporal_factor + 1
    return -(-num_frames // temporal_factor)


def max_frames(model_or_config: Any, *, temporal_factor: int = 4,
               causal_first_frame: bool = True, class_name: str | None = None) -> int | None:
    """The largest pixel frame count the transformer can take (of the family's frame rule:
    ``k * (L - 1) + 1`` for a causal VAE of temporal factor ``k``, ``k * L`` otherwise), or
    ``None`` where there is no hard limit. See :func:`frames_limit`."""
    limit = frames_limit(model_or_config, class_name=class_name)
    if limit is None:
        return None
    k, n = temporal_factor, limit.latent_frames
    return k * (n - 1) + 1 if causal_first_frame else k * n


def frames_error(num_frames: int, model_or_config: Any, *, temporal_factor: int = 4,
                 causal_first_frame: bool = True, class_name: str | None = None) -> str | None:
    """Why the transformer cannot take ``num_frames`` (naming the limit and the largest valid
    count), or ``None`` if it can (or its family has no hard limit).

    ``temporal_factor`` / ``causal_first_frame``: the VAE's time map (Wan: 4, causal; from a
    VAE: ``adapter_for(vae).time_map``; from a pipeline rule: ``rule.temporal_factor``).
    """
    limit = frames_limit(model_or_config, class_name=class_name)
    if limit is None:
        return None
    needed = latent_frames_for(num_frames, temporal_factor, causal_first_frame)
    if needed <= limit.latent_frames:
        return None
    most = max_frames(model_or_config, temporal_factor=temporal_factor,
                      causal_first_frame=causal_first_frame, class_name=class_name)
    return (f"--num-frames {num_frames} needs {needed} latent frames; {limit.reason} covers "
            f"{limit.latent_frames}: at most {most} frames")


def size_error(height: int, width: int, model_or_config: Any, *, spatial_factor: int = 8,
               class_name: str | None = None) -> str | None:
    """Why the transformer cannot take frames of ``height`` x ``width`` pixels, or ``None``.

    Wan's rotary table bounds the height and width too (``height // spatial_factor // p_h``
    rows at most ``rope_max_seq_len``); CogVideoX with learned positional embeddings
    (``use_learned_positional_embeddings``, CogVideoX-5b-I2V) takes only its
    ``sample_height`` x ``sample_width`` latents (``CogVideoXPatchEmbed.forward`` raises
    otherwise, at the first denoising step).
    """
    config, name = _config_and_class(model_or_config, class_name)
    if _is_wan_rope(config, name):
        rows = int(config.get("rope_max_seq_len", 1024))
        _, p_h, p_w = (int(p) for p in config["patch_size"])
        bad = [(axis, px, px // spatial_factor // p, (rows * p) * spatial_factor)
               for axis, px, p in (("height", height, p_h), ("width", width, p_w))
               if px // spatial_factor // p > rows]
        if bad:
            return "; ".join(
                f"--{axis} {px} needs {tokens} rotary positions; the {name or 'transformer'}'s "
                f"rotary table (rope_max_seq_len={rows}) covers {rows}: at most {most} px"
                for axis, px, tokens, most in bad)
        return None
    if name == "CogVideoXTransformer3DModel" or (name is None and "sample_frames" in config):
        if config.get("use_learned_positional_embeddings"):
            sh, sw = int(config["sample_height"]), int(config["sample_width"])
            if (height // spatial_factor, width // spatial_factor) != (sh, sw):
                return (f"{width}x{height} is not the size this CogVideoX transformer was "
                        f"trained at: its learned positional embeddings take "
                        f"{sw * spatial_factor}x{sh * spatial_factor} only")
    return None
