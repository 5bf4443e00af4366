"""``vidmem plan``: the offload plan for a budget, from each stage simulated at the render's shape,
running nothing."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import UsageError
from .options import (HelpFormatter, add_decode_options, add_shape_options, budget_or_auto,
                      check_sizes_for_family, decode_options_from, resolve_model)

EXAMPLES = """examples:
  vidmem plan --budget 8GiB --device cuda              # the built-in tiny Wan pipeline
  vidmem plan --budget 700MiB --device cuda --num-frames 33 --json
  vidmem plan --budget 1GiB --device cuda --reserve 0
  vidmem plan --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --dtype bf16 --budget 8GiB --device cuda \\
      --num-frames 81 --height 480 --width 832 --allow-fp8
  vidmem plan --model Wan-AI/Wan2.1-T2V-14B-Diffusers --dtype bf16 --budget 24GiB --device cuda \\
      --num-frames 81 --height 720 --width 1280
"""

DESCRIPTION = """Show which components stay on the accelerator, move in per stage, or stream in \
blocks under a memory budget. Each stage (text encoding, one denoising step as the pipeline runs \
it, the streaming decode) is simulated at the render's shape on fake tensors: weights and \
activations are printed per stage. Only configs are read (hub ids vidmem knows plan offline)."""


def add_parser(sub: Any) -> None:
    pl = sub.add_parser("plan", help="print the offload plan for a budget, running nothing",
                        description=DESCRIPTION, epilog=EXAMPLES, formatter_class=HelpFormatter)
    pl.add_argument("--model", default=None,
                    help="pipeline directory, hub id or vidmem-tiny:FAMILY:SEED (default: the "
                         "built-in tiny Wan pipeline); only configs are read, no weights")
    pl.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                    help="the dtype the pipeline would be loaded in (default: as saved)")
    add_shape_options(pl, "frames of the render")
    pl.add_argument("--budget", required=True,
                    help="device memory for the render, e.g. 8GiB, 6GB, 500MiB, or bytes; "
                         "'auto': the CUDA device's free memory minus a margin (5%% of it, at "
                         "least 256 MiB) (required)")
    pl.add_argument("--device", default=None,
                    help="cuda, cuda:N or cpu (default: cuda if available)")
    pl.add_argument("--reserve", default=None,
                    help="working memory per stage, replacing the simulated activations (and "
                         "the CUDA context estimate), e.g. 2GiB or 0 (default: simulated)")
    pl.add_argument("--allow-fp8", action="store_true",
                    help="a component that would stream its blocks may be stored in float8 "
                         "(computed in its own dtype) when that lets it run whole (default: off)")
    pl.add_argument("--json", action="store_true",
                    help="print the plan as JSON (default: a table)")
    add_decode_options(pl)
    pl.set_defaults(handler=run)


def check_args(args: argparse.Namespace) -> None:
    """What ``vidmem render`` refuses, refused the same way (one line, exit status 2), before
    any config is read: the model, frame count and sizes for its family, budget, device,
    reserve."""
    from ..memory import parse_bytes
    from ..offload.introspect import check_device

    facts, _class_name, _tiny = resolve_model(args)
    check_sizes_for_family(facts, args.num_frames, args.height, args.width)
    args.budget_value = budget_or_auto(args.budget)
    try:
        args.device = check_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    if args.reserve is not None:
        text = args.reserve.strip()
        try:
            args.reserve_value = 0 if text in ("0", "0B", "0b") else parse_bytes(text)
        except ValueError as e:
            raise UsageError(f"--reserve: {e}") from None
    else:
        args.reserve_value = None


def decode_plan_for(pipe: Any, args: argparse.Namespace) -> Any:
    """The decode tiling of the render (for ``--reserve`` plans, which simulate nothing):
    ``None`` if the size is unknown."""
    from ..decode import plan_decode
    from ..offload.stages import Workload, decode_latents_meta

    latents = decode_latents_meta(pipe, Workload(args.num_frames, args.height, args.width))
    if latents is None:
        return None
    return plan_decode(pipe.vae, latents, **decode_options_from(args).tiling())


def decode_description(plan: Any) -> dict[str, Any]:
    return {"summary": plan.summary(), "frames": plan.frames, "height": plan.height,
            "width": plan.width, "chunk_latents": plan.chunk_latents,
            "tile_latent": plan.tile_latent, "tiles": len(plan.tiles)}


def run(args: argparse.Namespace) -> int:
    import json

    from ..loading import DTYPES, load_pipeline_skeleton
    from ..memory import format_bytes
    from ..offload import plan_offload
    from ..offload.stages import Workload

    check_args(args)
    try:
        pipe = load_pipeline_skeleton(args.model, DTYPES[args.dtype] if args.dtype else None)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    workload = Workload(args.num_frames, args.height, args.width,
                        decode=decode_options_from(args))  # the decode the render would run
    plan = plan_offload(pipe, args.budget_value, device=args.device, reserve=args.reserve_value,
                        workload=workload, allow_fp8=args.allow_fp8)
    decode = plan.decode
    if decode is None:
        tiling = decode_plan_for(pipe, args)
        decode = None if tiling is None else decode_description(tiling)
    if args.json:
        out = plan.to_dict()
        out["decode"] = decode
        print(json.dumps(out, indent=2))
        return 0
    print(plan)
    if decode is None:
        print("decode: the size is unknown: pass --num-frames, --height and --width")
    else:
        print(f"decode: {decode['summary']}")
    if plan.activation_source == "simulated":
        print(f"simulated in {plan.simulate_seconds:.1f} s; the smallest budget that works is "
              f"{format_bytes(plan.smallest_budget_bytes)}")
    return 0
