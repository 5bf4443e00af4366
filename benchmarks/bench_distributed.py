"""Scale-out: one decode split over 1, 2, ... ranks, and a batch of clips over 1, 2, ... ranks.

Every case is a fresh ``torchrun --standalone --nproc-per-node N`` job (gloo on CPU, NCCL on
GPUs), so each rank's peak RSS (``VmHWM``) is its own.

* **Split decode**: the same latents (fixed seed) through the same VAE (random weights; time and
  memory follow shapes) with the same tiles, consumed as uint8 chunks on rank 0 (hashed, to show
  the output is identical for every rank count). Timed from a barrier to the last chunk. On CPU
  each rank runs ``torch.set_num_threads(1)`` (the 1-rank case too), so ranks compare like with
  like: on a machine with fewer free cores than ranks there is no speed-up to see. A windowed
  family (HunyuanVideo, tiny) is also decoded split by tiles and by windows.
* **Batch**: ``vidmem render --prompts`` with the tiny pipeline; throughput is clips per second
  of the batch itself (from rank 0's report: model loading excluded, waiting for the slowest
  rank included).

    python -m benchmarks.bench_distributed [--ranks 1 2] [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, save_json

RESULTS = Path(__file__).resolve().parent / "results"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


# --- one rank of a decode case (run under torchrun) ---------------------------------------------
def _vae(family: str, device: str):
    import torch

    torch.manual_seed(0)
    if family == "wan":
        from vidmem.tiny import tiny_wan_vae

        vae, channels = tiny_wan_vae(0), 16
    elif family == "wan2.1":  # the real Wan 2.1 VAE architecture (random weights), for GPUs
        from diffusers import AutoencoderKLWan

        vae, channels = AutoencoderKLWan(), 16
    elif family == "hunyuanvideo":
        from diffusers import AutoencoderKLHunyuanVideo

        vae = AutoencoderKLHunyuanVideo(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
            spatial_compression_ratio=8, temporal_compression_ratio=4)
        channels = 4
    else:
        raise ValueError(family)
    return vae.eval().to(device), channels


def decode_rank(args: argparse.Namespace) -> None:
    """One rank: decode, then rank 0 prints every rank's figures as one JSON line."""
    import torch
    import torch.distributed as dist

    import vidmem
    from vidmem.parallel import DecodeSplit, SplitSession, init_from_environment

    init_from_environment(timeout_s=1800)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if args.device == "cuda" else "cpu"
    if args.device == "cpu":
        torch.set_num_threads(1)
    vae, channels = _vae(args.family, device)
    latent_t = (args.frames - 1) // 4 + 1
    z = torch.randn(1, channels, latent_t, args.height // 8, args.width // 8,
                    generator=torch.Generator().manual_seed(0)).to(device)
    session = SplitSession.resolve(None)
    split = DecodeSplit(session, by=args.by) if session is not None else None
    opts = dict(chunk_frames=args.chunk_frames, tile_size=args.tile, tile_overlap=args.overlap)
    plan = vidmem.plan_decode(vae, z, **opts)
    digest = hashlib.sha256()
    frames = 0
    if session is not None:
        session.agree()  # start together
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for chunk in vidmem.decode_latents(vae, z, split=split, **opts):
        digest.update(chunk.numpy().tobytes())
        frames += chunk.shape[0]
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    mine = {"seconds": seconds, "peak_rss": vidmem.utils.peak_rss_bytes(),
            "peak_cuda": vidmem.memory.cuda_peak_bytes() if args.device == "cuda" else None,
            "items": split.items_done if split is not None else len(plan.tiles) * len(plan.windows)}
    ranks = session.agree(mine) if session is not None else [mine]
    if session is None or session.is_writer:
        print(json.dumps({
            "case": f"{args.family}_{args.by}", "ranks": len(ranks), "frames": frames,
            "seconds": max(r["seconds"] for r in ranks), "sha256": digest.hexdigest(),
            "mode": split.mode if split is not None else "single",
            "tiles": len(plan.tiles), "windows": len(plan.windows),
            "per_rank_peak_rss": [r["peak_rss"] for r in ranks],
            "per_rank_peak_cuda": [r["peak_cuda"] for r in ranks],
            "per_rank_items": [r["items"] for r in ranks]}))
    if dist.is_initialized():
        dist.destroy_process_group()


# --- the parent -------------------------------------------------------------------------------
def _torchrun(n: int, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([*TORCHRUN, "--nproc-per-node", str(n), *argv], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **env})
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun {n} x {' '.join(argv)} failed:\n{proc.stderr[-4000:]}")
    return proc


def decode_case(n: int, args: argparse.Namespace, family: str, by: str) -> dict:
    argv = ["-m", "benchmarks.bench_distributed", "--child", "--family", family, "--by", by,
            "--device", args.device, "--height", str(args.height), "--width", str(args.width),
            "--frames", str(args.frames), "--chunk-frames", str(args.chunk_frames),
            "--tile", str(args.tile), "--overlap", str(args.overlap)]
    proc = _torchrun(n, argv, {"OMP_NUM_THREADS": "1"} if args.device == "cpu" else {})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def batch_case(n: int, args: argparse.Namespace, prompts: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = _torchrun(n, ["-m", "vidmem", "render", "--prompts", str(prompts), "--out-dir",
                             tmp, "--num-frames", str(args.clip_frames), "--quiet", "--json"],
                         {"OMP_NUM_THREADS": "1"})
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
    peaks: dict[int, int] = {}
    for clip in report["clips"]:
        peaks[clip["rank"]] = max(peaks.get(clip["rank"], 0), clip["peak_rss_bytes"])
    return {"case": "batch", "ranks": n, "clips": len(report["clips"]),
            "seconds": report["seconds"], "clips_per_s": len(report["clips"]) / report["seconds"],
            "per_rank_peak_rss": [peaks.get(r, 0) for r in range(n)],
            "failed": len([c for c in report["clips"] if c["status"] != "done"])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--family", default=None, help="decode VAE (default: wan on CPU, the real "
                   "Wan 2.1 architecture on CUDA)")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--chunk-frames", type=int, default=16)
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--clips", type=int, default=8, help="clips in the batch case")
    p.add_argument("--clip-frames", type=int, default=33)
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.add_argument("--out", type=Path, default=RESULTS / "distributed.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--by", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        decode_rank(args)
        return {}
    if args.quick:
        args.height, args.width, args.frames, args.tile, args.overlap = 64, 96, 9, 48, 16
        args.chunk_frames, args.clips, args.clip_frames = 4, 2, 5
    family = args.family or ("wan2.1" if args.device == "cuda" else "wan")
    rows = []

    def show(r: dict) -> None:
        rss = ", ".join(f"{b / 2**20:.0f}" for b in r["per_rank_peak_rss"])
        print(f"  {r['case']:22s} {r['ranks']} rank(s): {r['seconds']:7.2f} s, peak RSS per rank "
              f"[{rss}] MiB", file=sys.stderr)

    for n in args.ranks:
        rows.append(decode_case(n, args, family, "auto"))
        show(rows[-1])
    windowed = {}
    if args.device == "cpu" and 2 in args.ranks:
        for n, by in ((1, "auto"), (2, "tiles"), (2, "windows")):
            windowed[f"{n}_{by}"] = decode_case(n, args, "hunyuanvideo", by)
            show(windowed[f"{n}_{by}"])
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp, "prompts.txt")
        prompts.write_text("".join(f"clip number {i}\n" for i in range(args.clips)))
        batch = []
        for n in args.ranks:
            batch.append(batch_case(n, args, prompts))
            show(batch[-1])
    by = {r["ranks"]: r for r in rows}
    base = by[min(by)]
    ratios = {
        "decode_speedup": {n: base["seconds"] / r["seconds"] for n, r in by.items()},
        "decode_rank0_rss_over_single": {n: r["per_rank_peak_rss"][0] / base["per_rank_peak_rss"][0]
                                         for n, r in by.items()},
        "decode_max_rank_rss_over_single": {n: max(r["per_rank_peak_rss"]) /
                                            base["per_rank_peak_rss"][0] for n, r in by.items()},
        "decode_identical_output": len({r["sha256"] for r in rows}) == 1,
        "batch_throughput_over_single": {b["ranks"]: b["clips_per_s"] / batch[0]["clips_per_s"]
                                         for b in batch},
    }
    if windowed:
        ratios["windowed_identical_output"] = len({r["sha256"] for r in windowed.values()}) == 1
        ratios["windowed_speedup"] = {k: windowed["1_auto"]["seconds"] / r["seconds"]
                                      for k, r in windowed.items()}
    result = {"config": {k: getattr(args, k) for k in ("ranks", "device", "height", "width",
                                                      "frames", "chunk_frames", "tile", "overlap",
                                                      "clips", "clip_frames")},
              "family": family, "threads_per_rank": 1 if args.device == "cpu" else None,
              "rows": rows, "windowed": windowed, "batch": batch, "ratios": ratios}
    save_json(args.out, result)
    print(f"\n### Split decode ({family}, {args.width}x{args.height}, {args.frames} frames, tile "
          f"{args.tile}/{args.overlap} px, {args.device})\n")
    print("| ranks | mode | tiles x chunks | decode s | speed-up | peak RSS per rank MiB |")
    print("|---:|---|---:|---:|---:|---|")
    for r in rows + list(windowed.values()):
        ref = windowed["1_auto"] if r["case"].startswith("hunyuanvideo") else base
        rss = ", ".join(f"{b / 2**20:.0f}" for b in r["per_rank_peak_rss"])
        print(f"| {r['ranks']} | {r['case']} ({r['mode']}) | {r['tiles']} x {r['windows']} | "
              f"{r['seconds']:.2f} | {ref['seconds'] / r['seconds']:.2f} | {rss} |")
    print("\n| batch ranks | clips | seconds | clips/s | vs 1 rank | peak RSS per rank MiB |")
    print("|---:|---:|---:|---:|---:|---|")
    for b in batch:
        rss = ", ".join(f"{x / 2**20:.0f}" for x in b["per_rank_peak_rss"])
        print(f"| {b['ranks']} | {b['clips']} | {b['seconds']:.2f} | {b['clips_per_s']:.3f} | "
              f"{b['clips_per_s'] / batch[0]['clips_per_s']:.2f} | {rss} |")
    print("\nratios:", json.dumps(ratios, indent=1))
    return result


if __name__ == "__main__":
    main()
