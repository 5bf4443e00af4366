"""``vidmem render``: run a pipeline and stream its frames into an MP4."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import (HelpFormatter, UsageError, add_decode_options, parse_budget,
                      check_sizes_for_family, positive_float, positive_int, resolve_model)
from .progress import Progress

EXAMPLES = """examples:
  vidmem render --out clip.mp4                       # built-in tiny pipeline, no download
  vidmem render --prompt "a red fox in snow" --num-frames 33 --out fox.mp4 --lossless
  vidmem render --num-frames 81 --chunk-frames 16 --tile-size 256 --out long.mp4 --json
  vidmem render --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --dtype bf16 --budget 8GiB \\
      --num-frames 81 --height 480 --width 832 --steps 30 --out wan.mp4
  vidmem render --model ./svd-xt --image first_frame.png --num-frames 25 --out svd.mp4
  vidmem render --model vidmem-tiny:ltx:0 --out ltx.mp4   # tiny LTX-Video (also: cogvideox,
      # mochi, hunyuanvideo, hunyuanvideo15, animatediff; wan-i2v and svd with --image)
"""

DEFAULT_PROMPT = "a cat walking on grass, cinematic"


def add_parser(sub: Any) -> None:
    r = sub.add_parser("render", help="run a pipeline and write an MP4",
                       description="Run a video pipeline and stream its frames into an MP4. "
                                   "Without --model, uses vidmem's built-in tiny Wan pipeline "
                                   "(random weights, offline).",
                       epilog=EXAMPLES, formatter_class=HelpFormatter)
    r.add_argument("--model", default=None,
                   help="diffusers pipeline directory or hub id, or vidmem-tiny:FAMILY:SEED "
                        "(default: the built-in tiny Wan pipeline, vidmem-tiny:wan:0)")
    r.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                   help="load the pipeline in this dtype")
    r.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="extra pipeline argument, typed as a Python literal (repeatable), e.g. "
                        "--arg guidance_scale_2=3.0 --arg max_sequence_length=256")
    r.add_argument("--prompt", default=None,
                   help="text prompt (default: a fixed example prompt; image-to-video pipelines "
                        "without a prompt ignore it)")
    r.add_argument("--negative-prompt", default=None)
    r.add_argument("--image", default=None, metavar="PATH",
                   help="conditioning image for image-to-video pipelines (SVD, Wan I2V, ...)")
    r.add_argument("--num-frames", type=positive_int, default=None,
                   help="frames to generate (Wan, CogVideoX, HunyuanVideo: 4k+1; LTX: 8k+1; "
                        "Mochi: 6k+1); default: 17 for tiny pipelines, else the pipeline's own")
    r.add_argument("--height", type=positive_int, default=None,
                   help="default: 64 for tiny pipelines, else the pipeline's own")
    r.add_argument("--width", type=positive_int, default=None,
                   help="default: 96 for tiny pipelines, else the pipeline's own")
    r.add_argument("--steps", type=positive_int, default=2, help="denoising steps (default 2)")
    r.add_argument("--guidance-scale", type=float, default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of the MP4 (default: the family's, e.g. Wan 16, LTX 24)")
    r.add_argument("--lossless", action="store_true",
                   help="write frames exactly (libx264rgb qp 0); default H.264 yuv420p")
    r.add_argument("--out", default=None,
                   help="output .mp4 path (required unless --prompts is given)")
    r.add_argument("--budget", default=None,
                   help="accelerator memory budget, e.g. 8GiB, 6GB, 500MiB: components are kept "
                        "resident, moved in per stage, or streamed in blocks to fit it")
    r.add_argument("--keep-latents", action="store_true",
                   help="keep OUT.latents.safetensors after a successful render (it is always "
                        "kept when decoding fails)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--json", action="store_true", help="print the final report as JSON")
    add_decode_options(r)
    # --- scale-out (#14): batches of clips (--prompts) and one clip split over torchrun's ranks
    from .cmd_batch import add_batch_options
    from .distributed import add_split_options

    add_batch_options(r)
    add_split_options(r, context_parallel=True)
    r.set_defaults(handler=run)


def parse_pipeline_args(items: list[str]) -> dict[str, Any]:
    import ast

    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--arg {item!r}: expected NAME=VALUE, e.g. --arg guidance_scale=5.0")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text  # a plain string
    return out


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked without loading weights: the pipeline class (from
    ``model_index.json``), frame count and sizes for its family, the image, the output path and
    the budget. Fills in the tiny pipelines' small default sizes."""
    import os

    from ..render import check_output_path

    rule, class_name, _tiny = resolve_model(args)
    args.fps = args.fps or (rule.default_fps if rule is not None else None)
    check_sizes_for_family(rule, args.num_frames, args.height, args.width)
    if rule is not None and rule.needs_image and args.image is None:
        raise UsageError(f"{class_name} is image-to-video: pass --image PATH")
    if args.image is not None and not os.path.isfile(args.image):
        raise UsageError(f"--image {args.image!r}: no such file")
    args.pipeline_args = parse_pipeline_args(args.arg)
    try:
        check_output_path(args.out)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    if args.budget is not None:
        parse_budget(args.budget)


def call_kwargs(args: argparse.Namespace, pipe: Any, log: Any) -> dict[str, Any]:
    """The pipeline call from the flags: only what was given (the pipeline's own defaults
    otherwise), and only what this pipeline takes (SVD has no prompt)."""
    import inspect

    import torch

    accepted = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = dict(num_inference_steps=args.steps,
                                  generator=torch.Generator().manual_seed(args.seed))
    optional = dict(prompt=args.prompt, negative_prompt=args.negative_prompt,
                    num_frames=args.num_frames, height=args.height, width=args.width,
                    guidance_scale=args.guidance_scale)
    if "prompt" in accepted and args.prompt is None:
        optional["prompt"] = DEFAULT_PROMPT
    for name, value in optional.items():
        if value is None:
            continue
        if name in accepted:
            kwargs[name] = value
        elif getattr(args, name, None) is not None:
            log(f"note: {type(pipe).__name__} takes no {name}; --{name.replace('_', '-')} ignored")
    if args.image is not None:
        from diffusers.utils import load_image

        kwargs["image"] = load_image(args.image)
    kwargs.update(args.pipeline_args)
    return kwargs


def run(args: argparse.Namespace) -> int:
    # --- scale-out (#14): --prompts is a batch; under torchrun one clip is split over the ranks
    from .cmd_batch import check_batch_flags, run_batch
    from .distributed import RankJob

    if check_batch_flags(args):
        return run_batch(args)
    split = RankJob.start(args)
    return split.run(lambda: run_one(args, split)) if split else run_one(args, None)


def run_one(args: argparse.Namespace, split: Any = None) -> int:
    """Render one clip (``split``: this rank's part of a clip split by ``torchrun``)."""
    check_args(args)
    import torch

    from ..loading import DTYPES, load_pipeline
    from ..render import render

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if args.quiet:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    log(f"stage: load {args.model}")
    pipe = load_pipeline(args.model, DTYPES[args.dtype] if args.dtype else None)
    pipe.set_progress_bar_config(disable=args.quiet, desc="denoise")
    kwargs = call_kwargs(args, pipe, log)
    frames = kwargs.get("num_frames")
    log(f"stage: denoise ({args.steps} steps), then decode + write "
        f"{frames if frames is not None else 'the pipeline default number of'} frames")
    offload = None
    if args.budget is not None:
        from ..offload import plan_offload

        offload = plan_offload(pipe, parse_budget(args.budget))
        log(str(offload))
    if split is not None:  # --- scale-out (#14): the transformer's context parallelism
        split.prepare_pipeline(pipe, args, offload)
    if args.fps is None:  # a hub id: the family is known only now
        from ..pipelines import rule_for

        args.fps = rule_for(pipe).default_fps
    progress = Progress(frames or 0, enabled=not args.quiet)
    # Decoders that inject noise (LTX) draw it from the global RNG: seed it for repeatability.
    torch.manual_seed(args.seed)
    try:
        report = render(pipe, args.out, fps=args.fps, chunk_frames=args.chunk_frames,
                        overlap_frames=args.overlap_frames, tile_size=args.tile_size,
                        tile_overlap=args.tile_overlap, lossless=args.lossless,
                        progress=progress, keep_latents=args.keep_latents, offload=offload,
                        process_group=split.session if split is not None else False, **kwargs)
    finally:
        progress.close()
    if split is None or split.is_writer:
        print(report.to_json() if args.json else str(report))
    return 0
