"""The ``vidmem`` command line: parse, validate, call the API, report.

Errors a user can fix (bad sizes, missing directories, unsupported models) print one line to
stderr and exit with status 2, before any model work starts where possible; unexpected failures
exit 1 with the exception's message (``VIDMEM_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Sequence

EXAMPLES_RENDER = """examples:
  vidmem render --out clip.mp4                       # built-in tiny pipeline, no download
  vidmem render --prompt "a red fox in snow" --num-frames 33 --out fox.mp4 --lossless
  vidmem render --num-frames 81 --chunk-frames 16 --tile-size 256 --out long.mp4 --json
  vidmem render --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --dtype bf16 --budget 8GiB \\
      --num-frames 81 --height 480 --width 832 --steps 30 --out wan.mp4
  vidmem render --model ./svd-xt --image first_frame.png --num-frames 25 --out svd.mp4
  vidmem render --model vidmem-tiny:ltx:0 --out ltx.mp4   # tiny LTX-Video (also: cogvideox,
      # mochi, hunyuanvideo, hunyuanvideo15, animatediff; wan-i2v and svd with --image)
"""


EXAMPLES_DECODE = """examples:
  vidmem decode clip.latents.safetensors --out clip.mp4
  vidmem decode clip.latents.safetensors --out clip.mp4 --tile-size 256 --chunk-frames 8
"""


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


def _whole_number(minimum: int):
    """An argparse type: a whole number of at least ``minimum``, with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a positive number, got {value}" if minimum == 1
                else f"expected {minimum} or more, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"vidmem: error: {message} (see {self.prog} --help)\n")


def _add_decode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decode tiling (pixels and pixel frames)")
    g.add_argument("--chunk-frames", type=_positive_int, default=None,
                   help="new frames decoded per temporal chunk (default 16)")
    g.add_argument("--overlap-frames", type=_non_negative_int, default=None,
                   help="frames of temporal context per window, for VAEs without a causal cache "
                        "(default: per family; ignored for Wan/CogVideoX)")
    g.add_argument("--tile-size", type=_non_negative_int, default=None,
                   help="spatial tile edge in pixels; 0 disables tiling (default: from frame size "
                        "and free device memory)")
    g.add_argument("--tile-overlap", type=_non_negative_int, default=None,
                   help="spatial tile overlap in pixels (default 64)")
    p.add_argument("--memory-breakdown", action="store_true",
                   help="profile the decode's host memory: baseline, live tensors, kernel "
                        "workspaces, allocator overhead (in the report and --json)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidmem", description="Render long videos with diffusers video pipelines "
                     "on small GPUs and CPUs: tiled streaming decode straight to MP4.",
                     epilog=EXAMPLES_RENDER, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    r = sub.add_parser("render", help="run a pipeline and write an MP4",
                       description="Run a video pipeline and stream its frames into an MP4. "
                                   "Without --model, uses vidmem's built-in tiny Wan pipeline "
                                   "(random weights, offline).",
                       epilog=EXAMPLES_RENDER, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    r.add_argument("--num-frames", type=_positive_int, default=None,
                   help="frames to generate (Wan, CogVideoX, HunyuanVideo: 4k+1; LTX: 8k+1; "
                        "Mochi: 6k+1); default: 17 for tiny pipelines, else the pipeline's own")
    r.add_argument("--height", type=_positive_int, default=None,
                   help="default: 64 for tiny pipelines, else the pipeline's own")
    r.add_argument("--width", type=_positive_int, default=None,
                   help="default: 96 for tiny pipelines, else the pipeline's own")
    r.add_argument("--steps", type=_positive_int, default=2, help="denoising steps (default 2)")
    r.add_argument("--guidance-scale", type=float, default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--fps", type=_positive_float, default=None,
                   help="frame rate of the MP4 (default: the family's, e.g. Wan 16, LTX 24)")
    r.add_argument("--lossless", action="store_true",
                   help="write frames exactly (libx264rgb qp 0); default H.264 yuv420p")
    r.add_argument("--out", required=True, help="output .mp4 path")
    r.add_argument("--budget", default=None,
                   help="accelerator memory budget, e.g. 8GiB, 6GB, 500MiB: components are kept "
                        "resident, moved in per stage, or streamed in blocks to fit it")
    r.add_argument("--keep-latents", action="store_true",
                   help="keep OUT.latents.safetensors after a successful render (it is always "
                        "kept when decoding fails)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--json", action="store_true", help="print the final report as JSON")
    _add_decode_options(r)

    pl = sub.add_parser("plan", help="print the offload plan for a budget, running nothing",
                        description="Show which components stay on the accelerator, move in per "
                                    "stage, or stream in blocks under a memory budget.",
                        epilog="examples:\n  vidmem plan --budget 8GiB --device cuda\n"
                               "  vidmem plan --budget 500KiB --device cuda --json\n"
                               "  vidmem plan --model Wan-AI/Wan2.1-T2V-14B-Diffusers --dtype bf16 "
                               "--budget 24GiB --device cuda --num-frames 81 --height 480 "
                               "--width 832\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("--model", default=None,
                    help="pipeline directory, hub id or vidmem-tiny:FAMILY:SEED (default: the "
                         "built-in tiny Wan pipeline); only configs are read, no weights")
    pl.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                    help="the dtype the pipeline would be loaded in (default: as saved)")
    pl.add_argument("--num-frames", type=_positive_int, default=None,
                    help="clip length for the decode plan (default: the pipeline's own)")
    pl.add_argument("--height", type=_positive_int, default=None)
    pl.add_argument("--width", type=_positive_int, default=None)
    pl.add_argument("--budget", required=True, help="e.g. 8GiB, 6GB, 500MiB, or bytes")
    pl.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    pl.add_argument("--reserve", default=None, help="working memory kept free (default: 1 GiB + "
                                                    "10%% of the budget)")
    pl.add_argument("--json", action="store_true")

    d = sub.add_parser("decode", help="decode a latent checkpoint to an MP4",
                       description="Decode a latent checkpoint (written by `vidmem render` next "
                                   "to its output) into an MP4, with the same tiling options.",
                       epilog=EXAMPLES_DECODE, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("latents", help="a .latents.safetensors file")
    d.add_argument("--out", required=True, help="output .mp4 path")
    d.add_argument("--model", default=None,
                   help="pipeline directory or hub id to load the VAE from (default: the one "
                        "recorded in the checkpoint)")
    d.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None)
    d.add_argument("--fps", type=_positive_float, default=None,
                   help="default: the fps recorded in the checkpoint")
    d.add_argument("--lossless", action="store_true")
    d.add_argument("--quiet", action="store_true")
    d.add_argument("--json", action="store_true")
    _add_decode_options(d)
    return parser


def _parse_pipeline_args(items: list[str]) -> dict[str, Any]:
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


#: sizes the tiny pipelines render by default (small enough for a CPU in seconds).
TINY_DEFAULTS = {"height": 64, "width": 96}
TINY_FRAMES = {"mochi": 13, "svd": 8, "animatediff": 8}
DEFAULT_PROMPT = "a cat walking on grass, cinematic"


def _check_render_args(args: argparse.Namespace) -> None:
    """Everything that can be checked without loading weights: the pipeline class (from
    ``model_index.json``), frame count and sizes for its family, the image, the output path and
    the budget. Fills in the tiny pipelines' small default sizes."""
    from .loading import pipeline_class_name
    from .pipelines import rule_for_class
    from .render import check_output_path
    from .tiny import parse_tiny_model_id, tiny_pipeline_class

    args.model = args.model or "vidmem-tiny:wan:0"
    try:
        tiny = parse_tiny_model_id(args.model)
        class_name = tiny_pipeline_class(tiny[0]) if tiny else pipeline_class_name(args.model)
        rule = rule_for_class(class_name) if class_name else None
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    args.fps = args.fps or (rule.default_fps if rule is not None else None)
    if tiny:
        args.num_frames = args.num_frames or TINY_FRAMES.get(tiny[0], 17)
        for name, value in TINY_DEFAULTS.items():
            setattr(args, name, getattr(args, name) or value)
    if rule is not None:
        if args.num_frames is not None and rule.frames_error(args.num_frames):
            raise UsageError(f"--num-frames {rule.frames_error(args.num_frames)}")
        multiple = rule.spatial_multiple
        for name in ("height", "width"):
            value = getattr(args, name)
            if value is not None and value % multiple:
                down = max(multiple, value // multiple * multiple)
                raise UsageError(f"--{name} {value} must be a multiple of {multiple} for "
                                 f"{rule.family} (try {down} or {down + multiple})")
        if rule.needs_image and args.image is None:
            raise UsageError(f"{class_name} is image-to-video: pass --image PATH")
    if args.image is not None and not os.path.isfile(args.image):
        raise UsageError(f"--image {args.image!r}: no such file")
    args.pipeline_args = _parse_pipeline_args(args.arg)
    try:
        check_output_path(args.out)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    if args.budget is not None:
        _parse_budget(args.budget)


def _parse_budget(text: str) -> int:
    from .memory import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise UsageError(f"--budget: {e}") from None


class _Progress:
    """Progress lines on stderr: decoded and written frames (tqdm bars)."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.bars: dict[str, Any] = {}
        self.total = total

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total or self.total, desc=f"{stage:>7}",
                                          unit="frame", position=len(self.bars), leave=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _call_kwargs(args: argparse.Namespace, pipe: Any, log: Any) -> dict[str, Any]:
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


def _cmd_render(args: argparse.Namespace) -> int:
    _check_render_args(args)
    import torch

    from .loading import DTYPES, load_pipeline
    from .render import render

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if args.quiet:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    log(f"stage: load {args.model}")
    pipe = load_pipeline(args.model, DTYPES[args.dtype] if args.dtype else None)
    pipe.set_progress_bar_config(disable=args.quiet, desc="denoise")
    kwargs = _call_kwargs(args, pipe, log)
    frames = kwargs.get("num_frames")
    log(f"stage: denoise ({args.steps} steps), then decode + write "
        f"{frames if frames is not None else 'the pipeline default number of'} frames")
    offload = None
    if args.budget is not None:
        from .offload import plan_offload

        offload = plan_offload(pipe, _parse_budget(args.budget))
        log(str(offload))
    if args.fps is None:  # a hub id: the family is known only now
        from .pipelines import rule_for

        args.fps = rule_for(pipe).default_fps
    progress = _Progress(frames or 0, enabled=not args.quiet)
    # Decoders that inject noise (LTX) draw it from the global RNG: seed it for repeatability.
    torch.manual_seed(args.seed)
    try:
        report = render(pipe, args.out, fps=args.fps, chunk_frames=args.chunk_frames,
                        overlap_frames=args.overlap_frames, tile_size=args.tile_size,
                        tile_overlap=args.tile_overlap, lossless=args.lossless,
                        progress=progress, keep_latents=args.keep_latents, offload=offload,
                        memory_breakdown=args.memory_breakdown, **kwargs)
    finally:
        progress.close()
    print(report.to_json() if args.json else str(report))
    return 0


def _decode_plan_for(pipe: Any, args: argparse.Namespace) -> Any:
    """The decode tiling a render of ``args``' size would use (``None`` if the size is unknown).

    Sizes come from the flags, else from the pipeline's ``__call__`` defaults (Wan: 81 frames,
    480x832); the latents are meta tensors of the VAE's native decode layout."""
    import inspect

    from .decode import plan_decode
    from .decode.families import adapter_for

    vae = getattr(pipe, "vae", None)
    if vae is None:
        return None
    cls = getattr(pipe, "class_name", None)
    import diffusers

    call = getattr(diffusers, cls).__call__ if cls else pipe.__call__
    defaults = {k: p.default for k, p in inspect.signature(call).parameters.items()}
    frames = args.num_frames or defaults.get("num_frames")
    height = args.height or defaults.get("height")
    width = args.width or defaults.get("width")
    if not all(isinstance(v, int) for v in (frames, height, width)):
        return None
    adapter = adapter_for(vae)
    sf, tm = adapter.spatial_factor, adapter.time_map
    t_lat = (frames - 1) // tm.factor + 1 if tm.causal_first_frame else -(-frames // tm.factor)
    latents = adapter.example_latents(t_lat, height // sf, width // sf)
    return plan_decode(vae, latents, adapter=adapter)


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from .loading import DTYPES, load_pipeline_skeleton
    from .memory import parse_bytes
    from .offload import plan_offload

    budget = _parse_budget(args.budget)
    try:
        reserve = parse_bytes(args.reserve) if args.reserve is not None else None
    except ValueError as e:
        raise UsageError(f"--reserve: {e}") from None
    model = args.model or "vidmem-tiny:wan:0"
    try:
        from .loading import pipeline_class_name
        from .tiny import parse_tiny_model_id

        tiny = parse_tiny_model_id(model)
        if tiny is None:
            pipeline_class_name(model)  # a missing directory: one clear line, before anything
        else:  # the tiny pipelines' small default sizes, as `vidmem render` uses them
            args.num_frames = args.num_frames or TINY_FRAMES.get(tiny[0], 17)
            args.height = args.height or TINY_DEFAULTS["height"]
            args.width = args.width or TINY_DEFAULTS["width"]
        pipe = load_pipeline_skeleton(model, DTYPES[args.dtype] if args.dtype else None)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    plan = plan_offload(pipe, budget, device=args.device, reserve=reserve)
    decode = _decode_plan_for(pipe, args)
    if args.json:
        out = plan.to_dict()
        out["decode"] = None if decode is None else {
            "summary": decode.summary(), "frames": decode.frames, "height": decode.height,
            "width": decode.width, "chunk_latents": decode.chunk_latents,
            "tile_latent": decode.tile_latent, "tiles": len(decode.tiles)}
        print(json.dumps(out, indent=2))
    else:
        print(plan)
        print("decode: " + (decode.summary() if decode is not None else
                            "pass --num-frames, --height and --width to see the decode tiling"))
        if decode is not None and plan.device != "cpu":
            print("        (on CUDA the tile size is re-chosen at run time from free memory; "
                  "out-of-memory retries halve chunks, then tiles)")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .loading import DTYPES, load_vae
    from .render import check_output_path, decode_to_video

    try:
        check_output_path(args.out)
        ckpt = load_checkpoint(args.latents)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    model = args.model or ckpt.model
    if not model:
        raise UsageError(f"{args.latents} records no model; pass --model PATH_OR_ID")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    log(f"stage: load VAE from {model}")
    vae = load_vae(model, DTYPES[args.dtype] if args.dtype else None)
    latents = ckpt.decode_input.latents
    progress = _Progress(ckpt.frames or 0, enabled=not args.quiet)
    log(f"stage: decode + write {tuple(latents.shape)} latents")
    ckpt.restore_rng()
    try:
        report = decode_to_video(vae, latents, args.out, args.fps or ckpt.fps,
                                 chunk_frames=args.chunk_frames, overlap_frames=args.overlap_frames,
                                 tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                                 lossless=args.lossless, decode_kwargs=ckpt.decode_input.decode_kwargs,
                                 progress=progress, memory_breakdown=args.memory_breakdown)
    finally:
        progress.close()
    print(report.to_json() if args.json else str(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"vidmem {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="vidmem: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handlers = {"render": _cmd_render, "decode": _cmd_decode, "plan": _cmd_plan}
    try:
        return handlers[args.command](args)
    except UsageError as e:
        print(f"vidmem: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vidmem: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if os.environ.get("VIDMEM_DEBUG"):
            raise
        kind = "error" if isinstance(e, (ValueError, TypeError, OSError)) else type(e).__name__
        print(f"vidmem: {kind}: {e}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, TypeError, OSError)) else 1


if __name__ == "__main__":
    sys.exit(main())
