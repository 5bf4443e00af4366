"""``vidmem decode``: decode a latent checkpoint (written by ``vidmem render``) into an MP4."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import (HelpFormatter, UsageError, add_decode_options,
                      add_memory_breakdown_option, positive_float, whole_clip_norm)
from .progress import Progress

EXAMPLES = """examples (each runs as printed, offline):
  vidmem render --out clip.mp4 --keep-latents        # keeps clip.latents.safetensors
  vidmem decode clip.latents.safetensors --out again.mp4
  vidmem decode clip.latents.safetensors --out tiled.mp4 --tile-size 64 --chunk-frames 8
"""


def add_parser(sub: Any) -> None:
    d = sub.add_parser("decode", help="decode a latent checkpoint to an MP4",
                       description="Decode a latent checkpoint (written by `vidmem render` next "
                                   "to its output) into an MP4, with the same tiling options. "
                                   "This is how a failed or interrupted render resumes.",
                       epilog=EXAMPLES, formatter_class=HelpFormatter)
    d.add_argument("latents", help="a .latents.safetensors file (written by vidmem render)")
    d.add_argument("--out", required=True, help="output .mp4 path (required)")
    d.add_argument("--model", default=None,
                   help="pipeline directory or hub id to load the VAE from (default: the one "
                        "recorded in the checkpoint)")
    d.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                   help="load the VAE in this dtype (default: the dtype the render decoded in, "
                        "as recorded in the checkpoint)")
    d.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of the MP4 (default: the fps recorded in the checkpoint)")
    d.add_argument("--lossless", action="store_true",
                   help="write frames exactly (libx264rgb qp 0; default: H.264 yuv420p crf 18)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT (default: refuse; a partial stream of OUT left "
                        "by the failed render is always replaced)")
    d.add_argument("--quiet", action="store_true",
                   help="no progress output (default: progress on stderr)")
    d.add_argument("--json", action="store_true",
                   help="print the final report as JSON (default: text)")
    add_decode_options(d)
    add_memory_breakdown_option(d)
    from .distributed import add_split_options  # --- scale-out (#14)

    add_split_options(d, context_parallel=False)
    d.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .distributed import RankJob  # --- scale-out (#14): under torchrun, split the decode

    split = RankJob.start(args)
    return split.run(lambda: run_one(args, split)) if split else run_one(args, None)


def run_one(args: argparse.Namespace, split: Any = None) -> int:
    """Decode the checkpoint (``split``: this rank's part of a decode split by ``torchrun``)."""
    import torch

    from ..checkpoint import load_checkpoint
    from ..loading import DTYPES, check_model_source, load_vae
    from ..outputs import OutputClaim
    from ..render import decode_to_video

    writer = split is None or split.is_writer
    claim = None
    ckpt = None
    try:
        if writer:
            ckpt = load_checkpoint(args.latents)
            # Own the output before loading the VAE: another run writing it, or an existing
            # video, fail at once.
            claim = OutputClaim(args.out, overwrite=args.overwrite, resume=True).acquire()
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    try:
        if split is not None:  # --- scale-out (#14): rank 0 reads the file, every rank gets it
            ckpt = split.session.share(ckpt if split.is_writer else None)
            split.log(f"split over {split.session.size} processes "
                      f"({split.session.group.backend})", args)
        model = args.model or ckpt.model
        if not model:
            raise UsageError(f"{args.latents} records no model; pass --model PATH_OR_ID")
        try:
            check_model_source(model)
        except OSError as e:
            raise UsageError(str(e)) from None
        log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        for partial, frames in (claim.replaced_partials if claim is not None else ()):
            log(f"note: replacing the partial stream {partial} ({frames} frames) of the earlier "
                f"attempt")
        dtype = DTYPES[args.dtype] if args.dtype else (
            getattr(torch, ckpt.vae_dtype) if ckpt.vae_dtype else None)
        log(f"stage: load VAE from {model}")
        try:
            vae = load_vae(model, dtype)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from None
        latents = ckpt.decode_input.latents
        progress = Progress(ckpt.frames or 0, enabled=not args.quiet)
        log(f"stage: decode + write {tuple(latents.shape)} latents")
        ckpt.restore_rng()
        try:
            report = decode_to_video(vae, latents, args.out, args.fps or ckpt.fps,
                                     chunk_frames=args.chunk_frames,
                                     overlap_frames=args.overlap_frames,
                                     tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                                     whole_clip_norm=whole_clip_norm(args),
                                     lossless=args.lossless,
                                     decode_kwargs=ckpt.decode_input.decode_kwargs,
                                     progress=progress, overwrite=args.overwrite, resume=True,
                                     memory_breakdown=args.memory_breakdown,
                                     process_group=split.session if split is not None else False)
        finally:
            progress.close()
    finally:
        if claim is not None:
            claim.release()
    if writer:
        print(report.to_json() if args.json else str(report))
    return 0
