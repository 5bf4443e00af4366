"""Plans you can trust: each stage's simulated device peak against a measurement of the same stage.

CPU (always): the tiny Wan, CogVideoX and LTX-Video pipelines (random weights) at two shapes each.
For every stage (text encoding, one denoising step as the pipeline runs it, vidmem's streaming
decode of the first chunks) the simulated peak (``vidmem.offload.stages``, fake tensors, CPU
kernel rules) is compared with the peak of live tensor bytes the PyTorch profiler records in a
real CPU run of the same stage (``vidmem.offload.measure``). Also: float8 weight storage's
quality cost on the tiny Wan pipeline in bf16 (latent PSNR against bf16 weights), and how long
``plan_offload`` takes for Wan 2.1 14B at 1280x720, 81 frames.

CUDA (``--device cuda``, needs a GPU): the same stages simulated for the CUDA target against
``torch.cuda.max_memory_allocated`` per stage, for the tiny pipeline and Wan 2.1 1.3B real shapes
(random bf16 weights) at 480x832, 33 and 81 frames; then a render under a plan, whose peak must
stay within the budget.

    python -m benchmarks.bench_plan [--quick] [--device cpu|cuda] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
GiB = 1 << 30

#: (family, (frames, height, width)) per run; decode cases add a tile size (None: untiled)
CPU_CASES = {
    "quick": {"pipeline": [("wan", (9, 32, 48)), ("wan", (17, 64, 96)),
                           ("cogvideox", (9, 64, 96)), ("cogvideox", (17, 64, 96)),
                           ("ltx", (9, 64, 96)), ("ltx", (17, 128, 192))],
              "decode": [("wan", (9, 32, 48), None), ("wan", (17, 64, 96), None),
                         ("wan", (9, 64, 96), 48), ("cogvideox", (9, 64, 96), None),
                         ("ltx", (9, 64, 96), None)]},
    "full": {"pipeline": [("wan", (17, 64, 96)), ("wan", (33, 128, 192)),
                          ("cogvideox", (17, 64, 96)), ("cogvideox", (33, 128, 192)),
                          ("ltx", (17, 128, 192)), ("ltx", (33, 256, 384))],
             "decode": [("wan", (17, 64, 96), None), ("wan", (33, 128, 192), None),
                        ("wan", (17, 128, 192), 96), ("cogvideox", (17, 64, 96), None),
                        ("cogvideox", (33, 128, 192), None), ("ltx", (17, 128, 192), None),
                        ("ltx", (33, 256, 384), None)]},
}


def _shape(shape: tuple[int, int, int]) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[2]}"


def cpu_rows(quick: bool) -> list[dict]:
    import vidmem
    from vidmem.offload.measure import measure_decode_cpu, measure_pipeline_cpu
    from vidmem.offload.stages import (Workload, decode_latents_meta, simulate_decode,
                                       simulate_pipeline_call)

    cases = CPU_CASES["quick" if quick else "full"]
    pipes: dict[str, object] = {}

    def pipe_for(family: str):
        if family not in pipes:
            pipes[family] = vidmem.tiny_pipeline(family, seed=0)
            pipes[family].set_progress_bar_config(disable=True)
        return pipes[family]

    rows = []
    for family, shape in cases["pipeline"]:
        pipe = pipe_for(family)
        workload = Workload(*shape)
        t0 = time.perf_counter()
        simulated = simulate_pipeline_call(pipe, workload, target="cpu")
        sim_s = time.perf_counter() - t0
        measured = measure_pipeline_cpu(pipe, workload)
        for name, stage in simulated.items():
            rows.append({"family": family, "stage": name, "shape": _shape(shape),
                         "simulated": stage.activation_bytes, "measured": measured[name],
                         "ratio": stage.activation_bytes / measured[name],
                         "simulate_s": sim_s, "detail": stage.detail})
            _print_row(rows[-1])
    for family, shape, tile in cases["decode"]:
        pipe = pipe_for(family)
        latents = decode_latents_meta(pipe, Workload(*shape))
        t0 = time.perf_counter()
        stage, plan = simulate_decode(pipe.vae, latents, target="cpu", tile_size=tile,
                                      tile_overlap=16 if tile else None)
        sim_s = time.perf_counter() - t0
        measured = measure_decode_cpu(pipe.vae, latents, plan)
        label = "vae decode" + (f" (tiles of {tile} px)" if tile else "")
        rows.append({"family": family, "stage": label, "shape": _shape(shape),
                     "simulated": stage.activation_bytes, "measured": measured,
                     "ratio": stage.activation_bytes / measured, "simulate_s": sim_s,
                     "detail": f"{stage.detail}; {plan.summary()}"})
        _print_row(rows[-1])
    return rows


def _print_row(r: dict) -> None:
    print(f"{r['family']:<10} {r['stage']:<28} {r['shape']:<12} {r['simulated']:>12} "
          f"{r['measured']:>12} {r['ratio']:6.3f}", file=sys.stderr)


def fp8_quality() -> dict:
    """Latent PSNR of the tiny Wan pipeline (bf16) with float8-stored components vs bf16
    weights, same seed (peak-to-peak: the bf16 latents' range)."""
    import torch

    import vidmem
    from vidmem.metrics import max_abs_error, psnr
    from vidmem.offload.fp8 import apply_fp8_storage, fp8_sizes

    call = dict(prompt="a red fox in snow", num_frames=17, height=64, width=96,
                num_inference_steps=4, output_type="latent")

    def latents(fp8: tuple[str, ...]) -> tuple[torch.Tensor, dict]:
        pipe = vidmem.tiny_pipeline("wan", seed=0).to(torch.bfloat16)
        pipe.set_progress_bar_config(disable=True)
        sizes = {}
        for name in fp8:
            module = getattr(pipe, name)
            sizes[name] = {"bf16_bytes": vidmem.offload.module_bytes(module),
                           "fp8_bytes": fp8_sizes(module).stored_bytes}
            apply_fp8_storage(module)
        out = pipe(generator=torch.Generator().manual_seed(0), **call).frames.float()
        return out, sizes

    reference, _ = latents(())
    span = (reference.max() - reference.min()).item()
    result = {"call": {k: v for k, v in call.items() if k != "output_type"}, "rows": []}
    for fp8 in (("transformer",), ("text_encoder",), ("text_encoder", "transformer")):
        got, sizes = latents(fp8)
        result["rows"].append({"fp8": list(fp8), "latent_psnr_db": psnr(got, reference, span),
                               "max_abs": max_abs_error(got, reference), "sizes": sizes})
        print(f"fp8 {'+'.join(fp8):<26} PSNR {result['rows'][-1]['latent_psnr_db']:.2f} dB",
              file=sys.stderr)
    return result


def wan14b_plan_timing() -> dict:
    """``plan_offload`` from configs alone for Wan 2.1 14B at 1280x720, 81 frames."""
    import tempfile

    import torch

    from vidmem.loading import load_pipeline_skeleton
    from vidmem.offload import plan_offload
    from vidmem.shapes import write_config_only_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        skeleton = load_pipeline_skeleton(str(write_config_only_pipeline(tmp, "14B")),
                                          torch.bfloat16)
        t1 = time.perf_counter()
        plan = plan_offload(skeleton, "24GiB", device="cuda", num_frames=81, height=720,
                            width=1280)
        t2 = time.perf_counter()
    return {"load_configs_s": t1 - t0, "plan_s": t2 - t1, "simulate_s": plan.simulate_seconds,
            "plan": plan.to_dict(), "text": str(plan)}


# --------------------------------------------------------------------------------------------
# CUDA


def cuda_rows(quick: bool) -> list[dict]:
    import torch
    from diffusers import DiffusionPipeline

    from vidmem.offload.measure import cuda_decode_peak, cuda_stage_peaks
    from vidmem.offload.stages import (Workload, decode_latents_meta, simulate_decode,
                                       simulate_pipeline_call)

    from .bench_offload import _model_dir

    cases = [("tiny", (17, 64, 96)), ("tiny", (33, 128, 192))]
    if not quick:
        cases += [("1.3B", (33, 480, 832)), ("1.3B", (81, 480, 832))]
    rows = []
    loaded: dict[str, object] = {}
    for size, shape in cases:
        if size not in loaded:
            loaded.clear()
            torch.cuda.empty_cache()
            pipe = DiffusionPipeline.from_pretrained(_model_dir("1.3B", size == "tiny"),
                                                     torch_dtype=torch.bfloat16).to("cuda")
            pipe.set_progress_bar_config(disable=True)
            loaded[size] = pipe
        pipe = loaded[size]
        workload = Workload(*shape, call_kwargs={"max_sequence_length": 512})
        simulated = simulate_pipeline_call(pipe, workload, target="cuda")
        measured = cuda_stage_peaks(pipe, workload)
        for name, stage in simulated.items():
            if name not in measured:
                continue
            rows.append({"model": size, "stage": name, "shape": _shape(shape),
                         "simulated": stage.activation_bytes, "measured": measured[name],
                         "ratio": stage.activation_bytes / measured[name]})
            _print_row({**rows[-1], "family": size})
        latents = decode_latents_meta(pipe, workload)
        for tile in (0, 256):
            stage, plan = simulate_decode(pipe.vae, latents, target="cuda", tile_size=tile)
            measured_decode = cuda_decode_peak(pipe.vae, latents, plan)
            rows.append({"model": size, "stage": f"vae decode (tile {tile or 'none'})",
                         "shape": _shape(shape), "simulated": stage.activation_bytes,
                         "measured": measured_decode,
                         "ratio": stage.activation_bytes / measured_decode})
            _print_row({**rows[-1], "family": size})
    return rows


def model_offload_budget(reference) -> int:
    """A budget that forces model offload for ``reference``'s pipeline and shape: halfway between
    the smallest budget with which every component runs whole (one at a time) and the peak with
    everything resident."""
    comps = reference.components
    resident_peak = (reference.overhead_bytes + sum(c.weights_bytes for c in comps)
                     + max(c.activation_bytes for c in comps))
    model_min = reference.overhead_bytes + max(c.weights_bytes + c.activation_bytes
                                               for c in comps)
    return (model_min + resident_peak) // 2


def cuda_render_within_budget() -> dict:
    """A tiny-pipeline render under a plan whose budget forces model offload: the allocator's
    peak (above what was allocated before) stays within the budget minus the CUDA context
    (which the allocator does not count)."""
    import gc
    import tempfile

    import torch

    import vidmem
    from vidmem.offload import plan_offload
    from vidmem.offload.simulate import CUDA_CONTEXT_BYTES

    pipe = vidmem.tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    call = dict(prompt="a fox", num_frames=33, height=128, width=192, num_inference_steps=2)
    reference = plan_offload(pipe, "8GiB", device="cuda", num_frames=33, height=128, width=192)
    budget = model_offload_budget(reference)
    plan = plan_offload(pipe, budget, device="cuda", activations_from=reference)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        vidmem.render(pipe, Path(tmp) / "x.mp4", offload=plan, tile_size=plan.decode_tile_size,
                      generator=torch.Generator().manual_seed(0), **call)
    peak = torch.cuda.max_memory_allocated() - before
    return {"budget": budget, "strategies": {c.name: c.strategy for c in plan.components},
            "predicted_peak": plan.predicted_peak_bytes, "max_memory_allocated": peak,
            "allocated_before": before, "allocator_budget": budget - CUDA_CONTEXT_BYTES,
            "within_budget": peak <= budget - CUDA_CONTEXT_BYTES}


def table(rows: list[dict], key: str = "family") -> str:
    lines = ["| model | stage | shape (frames x H x W) | simulated | measured | ratio |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r[key]} | {r['stage']} | {r['shape']} | {r['simulated']:,} | "
                     f"{r['measured']:,} | {r['ratio']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small shapes (the test suite runs it)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda adds the GPU columns (needs a CUDA device)")
    p.add_argument("--cuda-only", action="store_true",
                   help="with --device cuda: only the GPU columns (skip the CPU rows)")
    p.add_argument("--out", type=Path, default=RESULTS / "plan.json")
    args = p.parse_args(argv)
    if args.cuda_only and args.device != "cuda":
        p.error("--cuda-only needs --device cuda")
    import platform

    import torch

    result: dict = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                                "threads": torch.get_num_threads()}}
    if not args.cuda_only:
        result["cpu"] = cpu_rows(args.quick)
        result["cpu_max_error"] = max(abs(r["ratio"] - 1) for r in result["cpu"])
        print("\nSimulated vs measured (CPU, PyTorch profiler), bytes:\n" + table(result["cpu"]))
        result["fp8"] = fp8_quality()
    if not args.quick and not args.cuda_only:
        result["wan14b_720p"] = wan14b_plan_timing()
        print(f"\nWan 2.1 14B 1280x720x81 plan: {result['wan14b_720p']['plan_s']:.1f} s "
              f"(configs {result['wan14b_720p']['load_configs_s']:.1f} s)")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("bench_plan: --device cuda needs a CUDA device; GPU columns skipped",
                  file=sys.stderr)
        else:
            result["device"] = torch.cuda.get_device_name()
            result["cuda"] = cuda_rows(args.quick)
            result["cuda_max_error"] = max(abs(r["ratio"] - 1) for r in result["cuda"])
            result["cuda_render"] = cuda_render_within_budget()
            print("\nSimulated vs torch.cuda.max_memory_allocated, bytes:\n"
                  + table(result["cuda"], key="model"))
            print(json.dumps(result["cuda_render"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
