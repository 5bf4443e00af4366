"""``vidmem render``: run a pipeline and stream its frames into an MP4."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .clip import DEFAULT_PROMPT, call_kwargs, check_args, quiet_libraries
from .cmd_batch import add_batch_options, check_batch_flags, run_batch
from .distributed import RankJob, add_split_options
from .options import (TINY_STEPS, HelpFormatter, add_decode_options, add_memory_breakdown_option,
                      add_shape_options, budget_or_auto, positive_float, positive_int)
from .progress import Progress

EXAMPLES = """examples (each runs as printed, offline):
  vidmem render --out clip.mp4                       # built-in tiny pipeline, no download
  vidmem render --prompt "a red fox in snow" --num-frames 33 --out fox.mp4 --lossless
  vidmem render --num-frames 81 --chunk-frames 16 --tile-size 256 --out long.mp4 --json
  vidmem render --out planned.mp4 --budget 2GiB --keep-latents
  vidmem render --model vidmem-tiny:ltx:0 --out ltx.mp4   # tiny LTX-Video (also: cogvideox,
      # mochi, hunyuanvideo, hunyuanvideo15, animatediff; wan-i2v and svd with --image)
  vidmem render --out clip.mp4 --overwrite --steps 4   # replace clip.mp4
with a real model (downloads it; needs a connection or a local copy):
  vidmem render --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --dtype bf16 --budget 8GiB ...
"""

def add_parser(sub: Any) -> None:
    r = sub.add_parser("render", help="run a pipeline and write an MP4",
                       description="Run a video pipeline and stream its frames into an MP4. "
                                   "Without --model, uses vidmem's built-in tiny Wan pipeline "
                                   "(random weights, offline). --model also takes a hub id such "
                                   "as Wan-AI/Wan2.1-T2V-1.3B-Diffusers (downloaded by "
                                   "diffusers; needs a connection).",
                       epilog=EXAMPLES, formatter_class=HelpFormatter)
    r.add_argument("--model", default=None,
                   help="diffusers pipeline directory or hub id, or vidmem-tiny:FAMILY:SEED "
                        "(default: the built-in tiny Wan pipeline, vidmem-tiny:wan:0)")
    r.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                   help="load the pipeline in this dtype (default: as saved)")
    r.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="extra pipeline argument, typed as a Python literal (repeatable), e.g. "
                        "--arg guidance_scale_2=3.0 --arg max_sequence_length=256 (default: "
                        "none)")
    r.add_argument("--prompt", default=None,
                   help=f"text prompt (default: {DEFAULT_PROMPT!r}; image-to-video pipelines "
                        f"without a prompt ignore it)")
    r.add_argument("--negative-prompt", default=None,
                   help="negative prompt (default: the pipeline's own)")
    r.add_argument("--image", default=None, metavar="PATH",
                   help="conditioning image for image-to-video pipelines (SVD, Wan I2V, ...; "
                        "default: none)")
    r.add_argument("--video", default=None, metavar="PATH",
                   help="input video for video-to-video pipelines (WanVideoToVideo, LucyEdit, "
                        "CogVideoXVideoToVideo, ...), passed as its frames; other video inputs: "
                        "--arg NAME=PATH (default: none)")
    add_shape_options(r, "frames to generate")
    r.add_argument("--steps", type=positive_int, default=None,
                   help=f"denoising steps (default: the pipeline's own, e.g. 50 for "
                        f"WanPipeline; {TINY_STEPS} for the tiny pipelines)")
    r.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance scale (default: the pipeline's own)")
    r.add_argument("--seed", type=int, default=0,
                   help="random seed of the denoising (and of decoders that inject noise) "
                        "(default 0)")
    r.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of the MP4 (default: the family's, e.g. Wan 16, LTX 24)")
    r.add_argument("--lossless", action="store_true",
                   help="write frames exactly (libx264rgb qp 0; default: H.264 yuv420p crf 18)")
    r.add_argument("--out", default=None,
                   help="output .mp4 path (required unless --prompts is given)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT, kept latents and partial streams of an earlier "
                        "run (default: refuse, naming them)")
    r.add_argument("--budget", default=None,
                   help="accelerator memory budget, e.g. 8GiB, 6GB, 500MiB, or 'auto' (free "
                        "CUDA memory minus a margin): components are kept resident, moved in per "
                        "stage, or streamed in blocks to fit it, planned for this render's shape "
                        "(default: no offload)")
    r.add_argument("--allow-fp8", action="store_true",
                   help="with --budget: a component that would stream its blocks may be stored in "
                        "float8 (computed in its own dtype) when that lets it run whole (default: "
                        "off)")
    r.add_argument("--keep-latents", action="store_true",
                   help="keep OUT's .latents.safetensors after a successful render (default: "
                        "removed; always kept when decoding fails)")
    r.add_argument("--quiet", action="store_true", help="no progress output (default: progress "
                                                        "on stderr)")
    r.add_argument("--json", action="store_true",
                   help="print the final report as JSON (default: text)")
    add_decode_options(r)
    add_memory_breakdown_option(r)
    # --- scale-out (#14): batches of clips (--prompts) and one clip split over torchrun's ranks
    add_batch_options(r)
    add_split_options(r, context_parallel=True)
    r.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # --- scale-out (#14): --prompts is a batch; under torchrun one clip is split over the ranks
    if check_batch_flags(args):
        return run_batch(args)
    job = RankJob.start(args)
    return job.run(lambda: run_one(args, job))


def run_one(args: argparse.Namespace, job: RankJob) -> int:
    """Render one clip (``job``: this process's part, alone or one rank of a split render)."""
    check_args(args)
    from ..outputs import OutputClaim

    # Own the output before loading anything: a second render to the same file fails in
    # seconds, and the files of an earlier run are refused before minutes of loading. In a split
    # render rank 0 alone owns it (it alone writes).
    claim = OutputClaim(args.out, overwrite=args.overwrite).acquire() if job.is_writer else None
    try:
        return _render(args, job)
    finally:
        if claim is not None:
            claim.release()


def _render(args: argparse.Namespace, job: RankJob) -> int:
    import torch

    from ..loading import DTYPES, load_pipeline
    from ..rendering import render

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    quiet_libraries(args.quiet)
    log(f"stage: load {args.model}")
    pipe = load_pipeline(args.model, DTYPES[args.dtype] if args.dtype else None)
    kwargs = call_kwargs(args, pipe, log)
    frames = kwargs.get("num_frames")
    decode = args.decode_options
    offload = None
    if args.budget is not None:
        # --- issue #13: plan for this render's own shape and decode options; the decode then
        # uses the tile size the plan's decode stage was simulated with ---
        from ..offload import plan_offload
        from ..offload.stages import Workload

        workload = Workload.for_call(kwargs, decode=decode)
        offload = plan_offload(pipe, budget_or_auto(args.budget), workload=workload,
                               allow_fp8=args.allow_fp8)
        if decode.tile_size is None and offload.decode_tile_size is not None:
            decode = decode.with_(tile_size=offload.decode_tile_size)
        log(str(offload))
        # --- end issue #13 ---
    job.prepare_pipeline(pipe, args, offload)  # --- scale-out (#14): context parallelism
    progress = Progress(frames or 0, enabled=not args.quiet)
    progress.install_denoise(pipe)
    steps = kwargs.get("num_inference_steps", "the pipeline's default number of")
    progress.on_denoise = (f"stage: denoise ({steps} steps), then decode + write "
                           f"{frames if frames is not None else 'the default number of'} frames")
    # Decoders that inject noise (LTX) draw it from the global RNG: seed it for repeatability.
    torch.manual_seed(args.seed)
    try:
        report = render(pipe, args.out, decode_options=decode,
                        writer_settings=args.writer_settings, progress=progress,
                        keep_latents=args.keep_latents, offload=offload, overwrite=args.overwrite,
                        process_group=job.session, **kwargs)
    finally:
        progress.close()
    if job.is_writer:
        report.defaults = {**args.tiny_defaults, **report.defaults}
        print(report.to_json() if args.json else str(report))
    return 0
