"""``vidmem decode``: decode a latent checkpoint (written by ``vidmem render``) into an MP4."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import HelpFormatter, UsageError, add_decode_options, positive_float
from .progress import Progress

EXAMPLES = """examples:
  vidmem decode clip.latents.safetensors --out clip.mp4
  vidmem decode clip.latents.safetensors --out clip.mp4 --tile-size 256 --chunk-frames 8
"""


def add_parser(sub: Any) -> None:
    d = sub.add_parser("decode", help="decode a latent checkpoint to an MP4",
                       description="Decode a latent checkpoint (written by `vidmem render` next "
                                   "to its output) into an MP4, with the same tiling options.",
                       epilog=EXAMPLES, formatter_class=HelpFormatter)
    d.add_argument("latents", help="a .latents.safetensors file")
    d.add_argument("--out", required=True, help="output .mp4 path")
    d.add_argument("--model", default=None,
                   help="pipeline directory or hub id to load the VAE from (default: the one "
                        "recorded in the checkpoint)")
    d.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None)
    d.add_argument("--fps", type=positive_float, default=None,
                   help="default: the fps recorded in the checkpoint")
    d.add_argument("--lossless", action="store_true")
    d.add_argument("--quiet", action="store_true")
    d.add_argument("--json", action="store_true")
    add_decode_options(d)
    from .distributed import add_split_options  # --- scale-out (#14)

    add_split_options(d, context_parallel=False)
    d.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .distributed import RankJob  # --- scale-out (#14): under torchrun, split the decode

    split = RankJob.start(args)
    return split.run(lambda: run_one(args, split)) if split else run_one(args, None)


def run_one(args: argparse.Namespace, split: Any = None) -> int:
    """Decode the checkpoint (``split``: this rank's part of a decode split by ``torchrun``)."""
    from ..checkpoint import load_checkpoint
    from ..loading import DTYPES, load_vae
    from ..render import check_output_path, decode_to_video

    try:
        if split is None or split.is_writer:
            check_output_path(args.out)
            ckpt = load_checkpoint(args.latents)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    if split is not None:  # --- scale-out (#14): rank 0 reads the file, every rank gets it
        ckpt = split.session.share(ckpt if split.is_writer else None)
        split.log(f"split over {split.session.size} processes ({split.session.group.backend})",
                  args)
    model = args.model or ckpt.model
    if not model:
        raise UsageError(f"{args.latents} records no model; pass --model PATH_OR_ID")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    log(f"stage: load VAE from {model}")
    vae = load_vae(model, DTYPES[args.dtype] if args.dtype else None)
    latents = ckpt.decode_input.latents
    progress = Progress(ckpt.frames or 0, enabled=not args.quiet)
    log(f"stage: decode + write {tuple(latents.shape)} latents")
    ckpt.restore_rng()
    try:
        report = decode_to_video(vae, latents, args.out, args.fps or ckpt.fps,
                                 chunk_frames=args.chunk_frames, overlap_frames=args.overlap_frames,
                                 tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                                 lossless=args.lossless, decode_kwargs=ckpt.decode_input.decode_kwargs,
                                 progress=progress,
                                 process_group=split.session if split is not None else False)
    finally:
        progress.close()
    if split is None or split.is_writer:
        print(report.to_json() if args.json else str(report))
    return 0
