"""``vidmem render``: run a pipeline and stream its frames into an MP4."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import (TINY_STEPS, HelpFormatter, UsageError, add_decode_options,
                      add_memory_breakdown_option, add_shape_options,
                      budget_or_auto, check_sizes_for_family, positive_float, positive_int,
                      resolve_model, whole_clip_norm)
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

DEFAULT_PROMPT = "a cat walking on grass, cinematic"


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
    ``model_index.json``), frame count and sizes for its family, the decode tiling against the
    latents those sizes give (local pipelines: from the VAE's config alone), the image, the
    output path, the writer settings and the budget. Fills in the tiny pipelines' small
    defaults and records them in ``args.tiny_defaults``."""
    import os

    from ..outputs import check_video_path

    try:  # the cheap checks first: they answer before torch and diffusers are imported
        check_video_path(args.out)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    if args.image is not None and not os.path.isfile(args.image):
        raise UsageError(f"--image {args.image!r}: no such file")
    if args.budget is not None:
        budget_or_auto(args.budget)  # a size or "auto"
    from ..io.writer import check_writer_options
    from ..loading import check_model_reachable

    rule, class_name, tiny = resolve_model(args)
    if tiny and args.steps is None:
        args.steps = args.tiny_defaults["num_inference_steps"] = TINY_STEPS
    args.fps = args.fps or (rule.default_fps if rule is not None else None)
    check_sizes_for_family(rule, args.num_frames, args.height, args.width)
    if rule is not None and rule.needs_image and args.image is None:
        raise UsageError(f"{class_name} is image-to-video: pass --image PATH")
    args.pipeline_args = parse_pipeline_args(args.arg)
    try:
        if args.fps is not None:
            check_writer_options(args.fps, lossless=args.lossless)
        check_decode_options(args)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    try:
        check_model_reachable(args.model)
    except OSError as e:
        raise UsageError(str(e)) from None


def check_decode_options(args: argparse.Namespace) -> None:
    """The decode tiling flags against the latents of the requested clip, before any loading.

    Local pipelines: the VAE is built from its config on the meta device (no weights read);
    tiny pipelines and hub ids are checked by :func:`vidmem.render` after loading, still before
    the denoising."""
    from pathlib import Path

    from ..decode import plan_decode
    from ..loading import vae_skeleton
    from ..pipelines import clip_latents

    if not all(isinstance(v, int) for v in (args.num_frames, args.height, args.width)):
        return
    if not Path(args.model).is_dir():
        return
    vae = vae_skeleton(args.model)
    latents = clip_latents(vae, args.num_frames, args.height, args.width) if vae is not None \
        else None
    if latents is not None:
        plan_decode(vae, latents, chunk_frames=args.chunk_frames,
                    overlap_frames=args.overlap_frames, tile_size=args.tile_size,
                    tile_overlap=args.tile_overlap, whole_clip_norm=whole_clip_norm(args))


def call_kwargs(args: argparse.Namespace, pipe: Any, log: Any) -> dict[str, Any]:
    """The pipeline call from the flags: only what was given (the pipeline's own defaults
    otherwise), and only what this pipeline takes (SVD has no prompt)."""
    import inspect

    import torch

    accepted = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = dict(generator=torch.Generator().manual_seed(args.seed))
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
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
    from ..outputs import OutputClaim

    # Own the output before loading anything: a second render to the same file fails in
    # seconds, and the files of an earlier run are refused before minutes of loading. In a split
    # render rank 0 alone owns it (it alone writes).
    claim = None
    if split is None or split.is_writer:
        try:
            claim = OutputClaim(args.out, overwrite=args.overwrite).acquire()
        except OSError as e:
            raise UsageError(str(e)) from None
    try:
        return _render(args, split)
    finally:
        if claim is not None:
            claim.release()


def _render(args: argparse.Namespace, split: Any = None) -> int:
    import torch

    from ..loading import DTYPES, load_pipeline
    from ..render import render

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    quiet_libraries(args.quiet)
    log(f"stage: load {args.model}")
    pipe = load_pipeline(args.model, DTYPES[args.dtype] if args.dtype else None)
    kwargs = call_kwargs(args, pipe, log)
    frames = kwargs.get("num_frames")
    offload = None
    if args.budget is not None:
        # --- issue #13: plan for this render's own shape and decode options; the decode then
        # uses the tile size the plan's decode stage was simulated with ---
        from ..offload import plan_offload
        from ..offload.stages import Workload

        workload = Workload.for_call(kwargs, chunk_frames=args.chunk_frames,
                                     tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                                     overlap_frames=args.overlap_frames)
        offload = plan_offload(pipe, budget_or_auto(args.budget), workload=workload,
                               allow_fp8=args.allow_fp8)
        if args.tile_size is None and offload.decode_tile_size is not None:
            args.tile_size = offload.decode_tile_size
        log(str(offload))
        # --- end issue #13 ---
    if split is not None:  # --- scale-out (#14): the transformer's context parallelism
        split.prepare_pipeline(pipe, args, offload)
    if args.fps is None:  # a hub id: the family is known only now
        from ..pipelines import rule_for

        args.fps = rule_for(pipe).default_fps
    progress = Progress(frames or 0, enabled=not args.quiet)
    progress.install_denoise(pipe)
    steps = kwargs.get("num_inference_steps", "the pipeline's default number of")
    progress.on_denoise = (f"stage: denoise ({steps} steps), then decode + write "
                           f"{frames if frames is not None else 'the default number of'} frames")
    # Decoders that inject noise (LTX) draw it from the global RNG: seed it for repeatability.
    torch.manual_seed(args.seed)
    try:
        report = render(pipe, args.out, fps=args.fps, chunk_frames=args.chunk_frames,
                        overlap_frames=args.overlap_frames, tile_size=args.tile_size,
                        tile_overlap=args.tile_overlap, whole_clip_norm=whole_clip_norm(args),
                        lossless=args.lossless, progress=progress,
                        keep_latents=args.keep_latents, offload=offload, overwrite=args.overwrite,
                        memory_breakdown=args.memory_breakdown,
                        process_group=split.session if split is not None else False, **kwargs)
    finally:
        progress.close()
    if split is None or split.is_writer:
        report.defaults = {**args.tiny_defaults, **report.defaults}
        print(report.to_json() if args.json else str(report))
    return 0


def quiet_libraries(quiet: bool) -> None:
    """diffusers' and transformers' own progress bars off with ``--quiet``."""
    if quiet:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
