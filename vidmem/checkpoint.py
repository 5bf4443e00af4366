"""Latent checkpoints: the denoised latents, saved before the decode, so a failed decode costs
minutes, not the hour of denoising before it.

The file (``clip.mp4`` -> ``clip.latents.safetensors``) holds the latents exactly as the VAE's
``decode`` takes them (already denormalized), any tensor arguments of that decode (e.g. LTX's
timestep), the random-number state the decode started from (decoders that inject noise, like
LTX-Video's, draw it from the global RNG: restoring it makes a resumed decode equal the one that
failed), and string metadata: model, family, fps, frame count, dtype, the VAE's dtype, and a SHA-256 of every
tensor's bytes. ``vidmem decode`` reads it, and refuses a file whose tensors no longer match
their checksum (a damaged file would otherwise decode to garbage and exit 0) or whose latents are
not finite.

Version 3 records the decode options and writer settings the render decoded with
(:class:`vidmem.DecodeOptions`, :class:`vidmem.WriterSettings`), so a resume
(:func:`vidmem.resume.resume_decode`, ``vidmem decode``) reproduces the render's file exactly,
even when nobody remembers its flags (a SIGKILL leaves only the checkpoint and the lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .decode.options import DecodeOptions
from .errors import CheckpointDamaged, CheckpointError, CheckpointMissing
from .io.settings import WriterSettings
from .pipelines import DecodeInput

log = logging.getLogger("vidmem")

LATENTS_KEY = "latents"
RNG_KEYS = {"cpu": "rng_state.cpu", "cuda": "rng_state.cuda"}
_KWARG_PREFIX = "decode_kwargs."
FORMAT_VERSION = "3"  # 2: sha256 and vae_dtype in the metadata; 3: decode and writer settings


@dataclass
class LatentCheckpoint:
    """A loaded checkpoint: what to decode and how the render that wrote it was configured."""

    decode_input: DecodeInput
    model: str | None
    family: str | None
    fps: float
    frames: int | None
    dtype: str
    #: the dtype the VAE decoded in (``None`` for version-1 files): ``vidmem decode`` loads the
    #: VAE in it, so a resumed decode computes what the original would have.
    vae_dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``{"cpu": state, "cuda": state}`` at the start of the original decode (see module doc).
    rng_states: dict[str, torch.Tensor] = field(default_factory=dict)
    #: how the render decoded and wrote (``None`` for files before version 3).
    decode_options: DecodeOptions | None = None
    writer_settings: WriterSettings | None = None

    def restore_rng(self) -> None:
        """Put the global RNG back where the original decode started."""
        if "cpu" in self.rng_states:
            torch.set_rng_state(self.rng_states["cpu"])
        if "cuda" in self.rng_states and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.rng_states["cuda"])


def capture_rng() -> dict[str, torch.Tensor]:
    """The global RNG states (CPU, and the current CUDA device's if there is one)."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def non_finite_message(latents: torch.Tensor, what: str) -> str | None:
    """Why ``latents`` cannot be decoded (NaN/inf values), or ``None`` if they can."""
    if latents.device.type == "meta" or not latents.is_floating_point():
        return None
    finite = torch.isfinite(latents)
    if bool(finite.all()):
        return None
    bad = int(finite.numel() - finite.sum())
    return (f"{what} contain {bad} NaN/inf value(s) of {latents.numel()}: the denoising diverged "
            f"(common with fp16: try --dtype bf16 or fp32, or another seed); nothing was decoded")


def save_checkpoint(path: str | Path, decode_input: DecodeInput, *, model: str | None,
                    family: str | None, frames: int | None, fps: float | None = None,
                    extra: dict[str, Any] | None = None,
                    rng_states: dict[str, torch.Tensor] | None = None,
                    vae_dtype: torch.dtype | None = None,
                    decode_options: DecodeOptions | None = None,
                    writer_settings: WriterSettings | None = None) -> Path:
    """Write the checkpoint atomically (temp file + rename), so a crash never leaves half a file.

    ``decode_options`` / ``writer_settings``: how the render decodes and writes these latents
    (a resume uses them); ``fps`` defaults to the writer's (else 16)."""
    if fps is None:
        fps = writer_settings.fps if writer_settings is not None and writer_settings.fps else 16
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {LATENTS_KEY: decode_input.latents.detach().contiguous().cpu()}
    for device, state in (rng_states or {}).items():
        tensors[RNG_KEYS[device]] = state.contiguous().cpu()
    plain_kwargs = {}
    for key, value in decode_input.decode_kwargs.items():
        if isinstance(value, torch.Tensor):
            tensors[_KWARG_PREFIX + key] = value.detach().contiguous().cpu()
        else:
            plain_kwargs[key] = value
    metadata = {
        "format": "vidmem-latents", "version": FORMAT_VERSION,
        "model": model or "", "family": family or "", "fps": repr(float(fps)),
        "frames": "" if frames is None else str(frames),
        "dtype": str(decode_input.latents.dtype).removeprefix("torch."),
        "decode_kwargs": json.dumps(plain_kwargs), "extra": json.dumps(extra or {}),
        "vae_dtype": str(vae_dtype).removeprefix("torch.") if vae_dtype is not None else "",
        "decode_options": json.dumps(decode_options.to_dict()) if decode_options else "",
        "writer_settings": json.dumps(writer_settings.to_dict()) if writer_settings else "",
        "sha256": tensors_sha256(tensors),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_checkpoint_anywhere(path: Path, decode_input: DecodeInput,
                             **kwargs: Any) -> tuple[Path | None, str | None]:
    """Save the checkpoint at ``path``, else in the temp directory: the latents are the hour of
    denoising, and a full or read-only disk must not lose them.

    Returns ``(where it was saved or None, a note for the user when it is not at path)``.
    """
    try:
        return save_checkpoint(path, decode_input, **kwargs), None
    except Exception as first:  # noqa: BLE001 - OSError, or safetensors' own error type
        fallback = Path(tempfile.gettempdir()) / (
            f"{path.name.removesuffix('.latents.safetensors')}-{os.getpid()}-"
            f"{time.strftime('%Y%m%d-%H%M%S')}.latents.safetensors")
        try:
            saved = save_checkpoint(fallback, decode_input, **kwargs)
        except Exception as second:  # noqa: BLE001
            return None, (f"could not save the latents at {path} ({first}) nor at {fallback} "
                          f"({second}); decoding from memory")
        return saved, (f"could not save the latents at {path} ({first}); saved them at {saved} "
                       f"instead")


def load_checkpoint(path: str | Path) -> LatentCheckpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"latent checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {e}") from None
    if meta.get("format") != "vidmem-latents" or LATENTS_KEY not in tensors:
        raise CheckpointError(f"{str(path)!r} is not a vidmem latent checkpoint (written by "
                         f"`vidmem render`)")
    recorded = meta.get("sha256")
    if recorded and tensors_sha256(tensors) != recorded:
        raise CheckpointDamaged(f"{str(path)!r} is damaged: its tensors do not match the checksum "
                                f"recorded when it was written; re-render, or use another copy")
    problem = non_finite_message(tensors[LATENTS_KEY], f"the latents in {str(path)!r}")
    if problem:
        raise CheckpointDamaged(problem)
    kwargs: dict[str, Any] = json.loads(meta.get("decode_kwargs") or "{}")
    for key, value in tensors.items():
        if key.startswith(_KWARG_PREFIX):
            kwargs[key[len(_KWARG_PREFIX):]] = value
    frames = meta.get("frames")
    try:
        decode_options = (DecodeOptions.from_dict(json.loads(meta["decode_options"]))
                          if meta.get("decode_options") else None)
        writer_settings = (WriterSettings.from_dict(json.loads(meta["writer_settings"]))
                           if meta.get("writer_settings") else None)
    except (ValueError, TypeError) as e:  # InvalidOptions is a ValueError
        raise CheckpointDamaged(f"{str(path)!r} records settings vidmem cannot read ({e}); "
                                f"re-render, or use another copy") from None
    return LatentCheckpoint(
        decode_input=DecodeInput(tensors[LATENTS_KEY], kwargs),
        model=meta.get("model") or None, family=meta.get("family") or None,
        fps=float(meta.get("fps") or 16), frames=int(frames) if frames else None,
        dtype=meta.get("dtype", "float32"), vae_dtype=meta.get("vae_dtype") or None,
        extra=json.loads(meta.get("extra") or "{}"),
        rng_states={d: tensors[k] for d, k in RNG_KEYS.items() if k in tensors},
        decode_options=decode_options, writer_settings=writer_settings,
    )
