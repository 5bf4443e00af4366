"""``vidmem decode``: decode a latent checkpoint (written by ``vidmem render``) into an MP4."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .distributed import RankJob, add_split_options
from .errors import UsageError
from .options import (HelpFormatter, add_decode_options, add_memory_breakdown_option,
                      decode_options_from, positive_float, writer_settings_from)
from .progress import Progress

EXAMPLES = """examples (each runs as printed, offline):
  vidmem render --out clip.mp4 --keep-latents        # keeps clip.latents.safetensors
  vidmem decode clip.latents.safetensors --out again.mp4
  vidmem decode clip.latents.safetensors --out tiled.mp4 --tile-size 64 --chunk-frames 8
"""


def add_parser(sub: Any) -> None:
    d = sub.add_parser("decode", help="decode a latent checkpoint to an MP4",
                       description="Decode a latent checkpoint (written by `vidmem render` next "
                                   "to its output) into an MP4. The checkpoint records the "
                                   "render's decode and writer settings, and the decode uses "
                                   "them, so the file equals the one the render would have "
                                   "written; a flag given here overrides the recorded setting "
                                   "(and says so). This is how a failed or interrupted render "
                                   "resumes.",
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
                   help="write frames exactly (libx264rgb qp 0; default: as the render wrote, "
                        "recorded in the checkpoint)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT (default: refuse; a partial stream of OUT left "
                        "by the failed render is always replaced)")
    d.add_argument("--quiet", action="store_true",
                   help="no progress output (default: progress on stderr)")
    d.add_argument("--json", action="store_true",
                   help="print the final report as JSON (default: text)")
    add_decode_options(d)  # their defaults: as recorded in the checkpoint
    add_memory_breakdown_option(d)
    add_split_options(d, context_parallel=False)  # --- scale-out (#14)
    d.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    job = RankJob.start(args)  # --- scale-out (#14): under torchrun, split the decode
    return job.run(lambda: run_one(args, job))


def run_one(args: argparse.Namespace, job: RankJob) -> int:
    """Decode the checkpoint (``job``: alone, or this rank's part of a split decode)."""
    from ..checkpoint import load_checkpoint
    from ..loading import DTYPES, check_model_source
    from ..outputs import OutputClaim
    from ..resume import resume_decode

    decode = decode_options_from(args)  # the flags given override what the checkpoint records
    writer = writer_settings_from(args)
    claim = None
    ckpt = None
    if job.is_writer:
        ckpt = load_checkpoint(args.latents)
        # Own the output before loading the VAE: another run writing it, or an existing
        # video, fail at once.
        claim = OutputClaim(args.out, overwrite=args.overwrite, resume=True).acquire()
    try:
        if job.splits:  # --- scale-out (#14): rank 0 reads the file, every rank gets it
            ckpt = job.session.share(ckpt if job.is_writer else None)
            job.log(f"split over {job.session.size} processes "
                    f"({job.session.group.backend})", args)
        model = args.model or ckpt.model
        if not model:
            raise UsageError(f"{args.latents} records no model; pass --model PATH_OR_ID")
        check_model_source(model)
        log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        for partial, frames in (claim.replaced_partials if claim is not None else ()):
            log(f"note: replacing the partial stream {partial} ({frames} frames) of the earlier "
                f"attempt")
        latents = ckpt.decode_input.latents
        # resume_decode loads the VAE in --dtype, else in the dtype the render decoded in
        log(f"stage: load VAE from {model}, then decode + write {tuple(latents.shape)} latents")
        progress = Progress(ckpt.frames or 0, enabled=not args.quiet)
        try:
            report = resume_decode(ckpt, args.out, model=model,
                                   dtype=DTYPES[args.dtype] if args.dtype else None,
                                   decode_options=decode,
                                   writer_settings=writer, overwrite=args.overwrite,
                                   progress=progress, process_group=job.session,
                                   on_note=lambda note: log(f"note: {note}"))
        finally:
            progress.close()
    finally:
        if claim is not None:
            claim.release()
    if job.is_writer:
        print(report.to_json() if args.json else str(report))
    return 0
