"""Resuming a render from its latent checkpoint: the one function ``vidmem decode`` and batch
resume both use.

Why one function: a resume must decode exactly as the interrupted render would have (same VAE
dtype, same RNG state for decoders that inject noise, same decode options and writer settings),
and two implementations drifted apart before (the batch's never applied the checkpoint's VAE
dtype). The checkpoint records all of it (:mod:`vidmem.checkpoint`, version 3); settings the
caller gives explicitly override the recorded ones, and each override is reported, so a resume
that differs from the render says so.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .checkpoint import LatentCheckpoint, load_checkpoint
from .decode.options import DecodeOptions
from .errors import CheckpointError
from .io.settings import WriterSettings
from .loading import load_vae
from .rendering import ProgressFn, RenderReport, decode_to_video


def effective_settings(ckpt: LatentCheckpoint, decode_options: DecodeOptions | None = None,
                       writer_settings: WriterSettings | None = None
                       ) -> tuple[DecodeOptions, WriterSettings, list[str]]:
    """The settings a resume of ``ckpt`` decodes with: those it recorded, with the fields the
    caller set (not ``None``; ``lossless`` when ``True``) in ``decode_options`` /
    ``writer_settings`` overriding them; and a note for each field that differs from the
    recording."""
    recorded_decode = ckpt.decode_options or DecodeOptions()
    recorded_writer = ckpt.writer_settings or WriterSettings(fps=ckpt.fps)
    decode, writer = recorded_decode, recorded_writer
    notes: list[str] = []
    if decode_options is not None:
        decode = recorded_decode.with_(**{k: v for k, v in decode_options.to_dict().items()
                                          if v != getattr(DecodeOptions(), k)})
    if writer_settings is not None:
        given = {k: getattr(writer_settings, k) for k in writer_settings.to_dict()
                 if getattr(writer_settings, k) != getattr(WriterSettings(), k)}
        writer = recorded_writer.with_(**given)
    for name, before, after in ([(f, getattr(recorded_decode, f), getattr(decode, f))
                                 for f in recorded_decode.to_dict()]
                                + [(f, getattr(recorded_writer, f), getattr(writer, f))
                                   for f in recorded_writer.to_dict()]):
        if before != after:
            notes.append(f"the render decoded with {name}={before!r}; this resume uses "
                         f"{name}={after!r} as asked, so its frames can differ")
    return decode, writer, notes


@contextlib.contextmanager
def _in_dtype(vae: torch.nn.Module, dtype: torch.dtype | None) -> Iterator[torch.nn.Module]:
    """``vae`` computing in ``dtype`` for the block (cast back after): a resume decodes in the
    dtype the render decoded in, also with a pipeline loaded in another one."""
    current = next(vae.parameters()).dtype
    if dtype is None or dtype == current:
        yield vae
        return
    vae.to(dtype)
    try:
        yield vae
    finally:
        vae.to(current)


def resume_decode(checkpoint: str | os.PathLike | LatentCheckpoint, out: str | os.PathLike, *,
                  vae: torch.nn.Module | None = None, model: str | None = None,
                  dtype: torch.dtype | None = None,
                  decode_options: DecodeOptions | None = None,
                  writer_settings: WriterSettings | None = None, overwrite: bool = False,
                  progress: ProgressFn | None = None, process_group: Any = None,
                  on_note: Callable[[str], None] | None = None) -> RenderReport:
    """Decode a render's kept latents into ``out`` as the render would have.

    ``checkpoint``: a ``.latents.safetensors`` path or a loaded checkpoint. ``vae``: decode with
    this VAE (cast for the call to the dtype the render decoded in, unless ``dtype`` says
    otherwise); else it is loaded from ``model`` (default: the model the checkpoint records) in
    ``dtype`` (default: the recorded VAE dtype). ``decode_options`` / ``writer_settings``: fields
    that override the recorded settings (see :func:`effective_settings`); every override is told
    to ``on_note`` and listed in the report's notes. The global RNG is restored to where the
    render's decode started. ``process_group``: split the decode (see
    :func:`vidmem.decode_to_video`).
    """
    ckpt = (checkpoint if isinstance(checkpoint, LatentCheckpoint)
            else load_checkpoint(checkpoint))
    recorded_dtype = getattr(torch, ckpt.vae_dtype) if ckpt.vae_dtype else None
    if vae is None:
        source = model or ckpt.model
        if not source:
            raise CheckpointError(f"the checkpoint records no model; name the model to load the "
                                  f"VAE from (CLI: --model PATH_OR_ID)")
        vae = load_vae(source, dtype or recorded_dtype)
    decode, writer, notes = effective_settings(ckpt, decode_options, writer_settings)
    for note in notes:
        if on_note is not None:
            on_note(note)
    with _in_dtype(vae, dtype or recorded_dtype):
        ckpt.restore_rng()
        report = decode_to_video(vae, ckpt.decode_input.latents, Path(out),
                                 decode_options=decode, writer_settings=writer,
                                 decode_kwargs=ckpt.decode_input.decode_kwargs, progress=progress,
                                 overwrite=overwrite, resume=True, process_group=process_group,
                                 frames=ckpt.frames,
                                 first_frame=int(ckpt.extra.get("first_frame", 0)))
    report.notes = notes + report.notes
    return report
