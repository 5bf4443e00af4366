"""``vidmem plan``: the offload plan (and decode tiling) for a budget, running nothing."""

from __future__ import annotations

import argparse
from typing import Any

from .options import (DEFAULT_MODEL, TINY_DEFAULTS, TINY_FRAMES, HelpFormatter, UsageError,
                      parse_budget, positive_int)

EXAMPLES = """examples:
  vidmem plan --budget 8GiB --device cuda
  vidmem plan --budget 500KiB --device cuda --json
  vidmem plan --model Wan-AI/Wan2.1-T2V-14B-Diffusers --dtype bf16 --budget 24GiB --device cuda --num-frames 81 --height 480 --width 832
"""


def add_parser(sub: Any) -> None:
    pl = sub.add_parser("plan", help="print the offload plan for a budget, running nothing",
                        description="Show which components stay on the accelerator, move in per "
                                    "stage, or stream in blocks under a memory budget.",
                        epilog=EXAMPLES, formatter_class=HelpFormatter)
    pl.add_argument("--model", default=None,
                    help="pipeline directory, hub id or vidmem-tiny:FAMILY:SEED (default: the "
                         "built-in tiny Wan pipeline); only configs are read, no weights")
    pl.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                    help="the dtype the pipeline would be loaded in (default: as saved)")
    pl.add_argument("--num-frames", type=positive_int, default=None,
                    help="clip length for the decode plan (default: the pipeline's own)")
    pl.add_argument("--height", type=positive_int, default=None)
    pl.add_argument("--width", type=positive_int, default=None)
    pl.add_argument("--budget", required=True, help="e.g. 8GiB, 6GB, 500MiB, or bytes")
    pl.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    pl.add_argument("--reserve", default=None, help="working memory kept free (default: 1 GiB + "
                                                    "10%% of the budget)")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(handler=run)


def decode_plan_for(pipe: Any, args: argparse.Namespace) -> Any:
    """The decode tiling a render of ``args``' size would use (``None`` if the size is unknown).

    Sizes come from the flags, else from the pipeline's ``__call__`` defaults (Wan: 81 frames,
    480x832); the latents are meta tensors of the VAE's native decode layout."""
    import inspect

    from ..decode import plan_decode
    from ..decode.families import adapter_for

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


def run(args: argparse.Namespace) -> int:
    import json

    from ..loading import DTYPES, load_pipeline_skeleton
    from ..memory import parse_bytes
    from ..offload import plan_offload

    budget = parse_budget(args.budget)
    try:
        reserve = parse_bytes(args.reserve) if args.reserve is not None else None
    except ValueError as e:
        raise UsageError(f"--reserve: {e}") from None
    model = args.model or DEFAULT_MODEL
    try:
        from ..loading import pipeline_class_name
        from ..tiny import parse_tiny_model_id

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
    decode = decode_plan_for(pipe, args)
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
