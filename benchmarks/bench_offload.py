"""Offload on CUDA: render time and peak device memory for diffusers' offload levers and vidmem
plans at three budgets, in one run (each case in a fresh subprocess).

The pipeline is Wan 2.1 T2V with the real shapes (umt5-xxl text encoder, the 1.3B or 14B
transformer, the Wan VAE; ``vidmem.shapes``) and random bf16 weights: speed and memory depend on
shapes, not weight values. It is written once with ``save_pretrained`` to a cache directory and
every case loads it back with ``from_pretrained`` (the real loading path; loading is not timed).

Cases: everything resident; diffusers ``enable_model_cpu_offload``; diffusers
``enable_sequential_cpu_offload``; diffusers group offloading (block level, CUDA streams); vidmem
plans at a budget that keeps everything resident, one that forces model offload, and one that
forces block streaming. Each reports wall time from weights on the host to frames (moving weights
to the GPU is timed in every case, ``resident``'s ``pipe.to("cuda")`` included; vidmem's planning
is not) through denoising and decode (vidmem: ``vidmem.render`` to an MP4; diffusers:
``pipe(output_type="np")``, its own decode) and ``torch.cuda.max_memory_allocated``.

    python -m benchmarks.bench_offload [--size 1.3B|14B] [--frames 33] [--steps 4] [--quick]
                                       [--cases resident vidmem_model ...]

Needs CUDA; without it prints why and exits 0 (so the runner can include it everywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .common import run_child, save_json

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("VIDMEM_BENCH_CACHE", Path.home() / ".cache" / "vidmem-bench"))
DIFFUSERS_CASES = ("resident", "model_offload", "sequential_offload", "group_offload")
CASES = DIFFUSERS_CASES + ("vidmem_resident", "vidmem_model", "vidmem_blocks")
GiB = 1 << 30


def _model_dir(size: str, tiny: bool) -> Path:
    """The random-weight Wan 2.1 pipeline of ``size`` on disk (built on first use)."""
    import torch

    if tiny:
        directory = CACHE / "wan-tiny"
        if not (directory / "model_index.json").exists():
            import vidmem

            vidmem.tiny_pipeline("wan", 0).save_pretrained(directory)
        return directory
    directory = CACHE / f"wan2.1-{size}-random-bf16"
    if (directory / "model_index.json").exists():
        return directory
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline,
                           WanTransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    from vidmem.shapes import UMT5_XXL, WAN21_TRANSFORMER, WAN21_VAE
    from vidmem.tiny import tiny_tokenizer

    torch.manual_seed(0)

    def random_bf16(build) -> torch.nn.Module:
        # built and initialised on the GPU (seconds, not minutes of CPU init for 6B parameters)
        with torch.device("cuda"):
            module = build()
        module = module.to(torch.bfloat16)
        with torch.no_grad():
            for p in module.parameters():
                p.normal_(0, 0.02)
        return module

    pipe = WanPipeline(
        tokenizer=tiny_tokenizer(512),
        text_encoder=random_bf16(lambda: UMT5EncoderModel(UMT5Config(**UMT5_XXL))),
        transformer=random_bf16(lambda: WanTransformer3DModel(**WAN21_TRANSFORMER[size])),
        vae=AutoencoderKLWan(**WAN21_VAE).to(torch.bfloat16),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))
    pipe.save_pretrained(directory)
    del pipe
    torch.cuda.empty_cache()
    return directory


def run_case(case: str, args: argparse.Namespace) -> dict:
    import torch
    from diffusers import DiffusionPipeline

    import vidmem

    pipe = DiffusionPipeline.from_pretrained(_model_dir(args.size, args.tiny),
                                             torch_dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    call = dict(prompt="a red fox running through fresh snow", num_frames=args.frames,
                height=args.height, width=args.width, num_inference_steps=args.steps,
                max_sequence_length=64, generator=torch.Generator().manual_seed(0))
    plan = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()  # every case starts with the weights on the host
    if case == "resident":
        pipe.to("cuda")
    elif case == "model_offload":
        pipe.enable_model_cpu_offload()
    elif case == "sequential_offload":
        pipe.enable_sequential_cpu_offload()
    elif case == "group_offload":
        pipe.enable_group_offload(onload_device=torch.device("cuda"), offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=True)
    else:  # vidmem_<budget bytes>, planned for this render's shape
        plan = vidmem.plan_offload(pipe, int(case.split("_")[1]), device="cuda",
                                   num_frames=args.frames, height=args.height, width=args.width)
        t0 = time.perf_counter()  # planning is not timed (it runs once per shape, not per render)
    if plan is None:
        frames = pipe(output_type="np", **call).frames[0]
        n = len(frames)
        del frames
    else:
        out = Path(args.tmp) / f"{case}.mp4"
        report = vidmem.render(pipe, out, offload=plan, tile_size=plan.decode_tile_size, **call)
        n = report.frames
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    result = {"case": case, "frames": n, "wall_s": wall,
              "peak_cuda": torch.cuda.max_memory_allocated(),
              "peak_rss": vidmem.utils.peak_rss_bytes()}
    if plan is not None:
        result["plan"] = {c.name: c.strategy for c in plan.components}
        result["budget"] = plan.budget_bytes
        result["predicted_peak"] = plan.predicted_peak_bytes
    print(json.dumps(result))
    return result


def budgets(size: str, tiny: bool, args: argparse.Namespace) -> dict[str, int]:
    """Three budgets from the measured component sizes: all resident, model offload, blocks
    (those the planner accepts for the render's shape)."""
    from diffusers import DiffusionPipeline
    from vidmem.offload import module_bytes, plan_offload

    import torch

    pipe = DiffusionPipeline.from_pretrained(_model_dir(size, tiny), torch_dtype=torch.bfloat16)
    sizes = {n: module_bytes(m) for n, m in pipe.components.items()
             if isinstance(m, torch.nn.Module)}
    total, largest = sum(sizes.values()), max(sizes.values())
    out = {}
    for name, budget in (("resident", int(total * 1.3) + 2 * GiB),
                         ("model", int(largest * 1.15) + 2 * GiB),
                         ("blocks", int(largest * 0.5) + 2 * GiB)):
        try:
            plan_offload(pipe, budget, device="cuda", num_frames=args.frames, height=args.height,
                         width=args.width)
        except ValueError:
            continue
        out[name] = budget
    return out


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", choices=["1.3B", "14B"], default="1.3B")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="the tiny pipeline, 17 frames 64x96")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES,
                   help="which cases to run (default: all)")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="/tmp", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "offload.json")
    args = p.parse_args(argv)
    args.tiny = args.quick
    if args.quick:
        args.frames, args.height, args.width, args.steps = 17, 64, 96, 2
    import torch

    if not torch.cuda.is_available():
        print("bench_offload: needs a CUDA device; skipped", file=sys.stderr)
        return None
    if args.case:
        return run_case(args.case, args)
    common = ["--size", args.size, "--frames", str(args.frames), "--height", str(args.height),
              "--width", str(args.width), "--steps", str(args.steps)] + (["--quick"] if args.quick else [])
    _model_dir(args.size, args.tiny)
    plans = budgets(args.size, args.tiny, args)
    names = {c: c for c in DIFFUSERS_CASES}
    names.update({f"vidmem_{label}": f"vidmem_{b}" for label, b in plans.items()})
    cases = [names[c] for c in args.cases if c in names]  # in the order asked for
    rows = []
    for case in cases:
        try:
            r = run_child("benchmarks.bench_offload", common + ["--case", case])
        except RuntimeError as e:  # one lever failing (or out of memory) is a row, not a crash
            r = {"case": case, "error": str(e).strip().splitlines()[-1]}
            print(f"{case:<24} failed: {r['error']}", file=sys.stderr, flush=True)
        else:
            print(f"{case:<24} {r['wall_s']:8.1f} s  peak CUDA {r['peak_cuda'] / GiB:6.2f} GiB  "
                  f"{json.dumps(r)}", file=sys.stderr, flush=True)
        rows.append(r)
    base = {r["case"]: r for r in rows if "error" not in r}
    ratios = {}
    for label, budget in plans.items():
        r = base.get(f"vidmem_{budget}")
        for other in DIFFUSERS_CASES:
            if r and other in base:
                ratios[f"vidmem_{label}/{other}_time"] = r["wall_s"] / base[other]["wall_s"]
    result = {"device": torch.cuda.get_device_name(), "size": "tiny" if args.tiny else args.size,
              "frames": args.frames, "height": args.height, "width": args.width,
              "steps": args.steps, "budgets": plans, "rows": rows, "ratios": ratios}
    print("\n| case | wall s | peak CUDA GiB |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | failed: {r['error']} | |" if "error" in r else
              f"| {r['case']} | {r['wall_s']:.1f} | {r['peak_cuda'] / GiB:.2f} |")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
