"""vidmem's streaming tiled decode vs diffusers' decode (untiled and ``enable_tiling``), one run.

Each case runs in a fresh subprocess, so its peak RSS (``VmHWM``) is its own. Every case decodes
the same latents (fixed seed) with the same Wan VAE (tiny config, random weights: speed and memory
depend on shapes, not weight values) and consumes the frames the way a user would: diffusers
cases hold the decoded clip (that is what ``vae.decode`` returns); the vidmem case streams uint8
chunks and drops them. Quality (PSNR, max abs error vs the full decode) is measured in-process
at the shorter length.

    python -m benchmarks.bench_decode [--quick] [--height 240 --width 416] [--frames 17 65]
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
CASES = ("diffusers", "diffusers_tiled", "vidmem_tiled", "vidmem_tiled_mmap4m")
# glibc grows its mmap threshold (up to 32 MiB) after freeing large blocks, so mid-sized decode
# activations then come from the heap, whose free space fragments: peak RSS creeps up with the
# number of chunks until it levels off. A fixed threshold (this env var, read at process start)
# keeps those blocks in mmap and RSS flat, at some cost in page faults. Measured side by side.
CASE_ENV = {"vidmem_tiled_mmap4m": {"MALLOC_MMAP_THRESHOLD_": str(4 << 20)}}


def _setup(height: int, width: int, frames: int, dtype: str = "float32"):
    import torch

    from vidmem.tiny import tiny_wan_vae

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    vae = tiny_wan_vae(0).to(getattr(torch, dtype))
    latent_t = (frames - 1) // 4 + 1
    z = torch.randn(1, 16, latent_t, height // 8, width // 8,
                    generator=torch.Generator().manual_seed(0)).to(vae.dtype)
    return vae, z


def run_case(case: str, height: int, width: int, frames: int, tile: int, overlap: int) -> dict:
    """One measurement in this process; prints a JSON line."""
    import torch

    from vidmem import decode_latents
    from vidmem.utils import peak_rss_bytes

    vae, z = _setup(height, width, frames)
    t0 = time.perf_counter()
    with torch.no_grad():
        if case == "diffusers":
            out = vae.decode(z).sample
            n = out.shape[2]
        elif case == "diffusers_tiled":
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_sample_stride_height=tile - overlap,
                              tile_sample_stride_width=tile - overlap)
            out = vae.decode(z).sample
            n = out.shape[2]
        elif case in ("vidmem_tiled", "vidmem_tiled_mmap4m"):
            n = 0
            for chunk in decode_latents(vae, z, chunk_frames=16, tile_size=tile,
                                        tile_overlap=overlap):
                n += chunk.shape[0]
        else:
            raise ValueError(case)
    seconds = time.perf_counter() - t0
    return {"case": case, "frames": n, "seconds": seconds, "peak_rss": peak_rss_bytes()}


def quality(height: int, width: int, frames: int, tile: int, overlap: int) -> dict:
    import torch

    from vidmem import decode_latents
    from vidmem.metrics import max_abs_error, psnr

    vae, z = _setup(height, width, frames)
    with torch.no_grad():
        ref = vae.decode(z).sample
        ours_untiled = torch.cat(list(decode_latents(vae, z, chunk_frames=8, tile_size=0,
                                                     output_type="pt")), 2)
        ours = torch.cat(list(decode_latents(vae, z, chunk_frames=16, tile_size=tile,
                                             tile_overlap=overlap, output_type="pt")), 2)
        vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                          tile_sample_stride_height=tile - overlap,
                          tile_sample_stride_width=tile - overlap)
        theirs = vae.decode(z).sample
    return {
        "vidmem_untiled": {"psnr": psnr(ours_untiled, ref), "max_abs": max_abs_error(ours_untiled, ref)},
        "vidmem_tiled": {"psnr": psnr(ours, ref), "max_abs": max_abs_error(ours, ref)},
        "diffusers_tiled": {"psnr": psnr(theirs, ref), "max_abs": max_abs_error(theirs, ref)},
    }


def _child(case: str, args: argparse.Namespace, frames: int) -> dict:
    return run_child("benchmarks.bench_decode", [
        "--case", case, "--height", str(args.height), "--width", str(args.width), "--tile",
        str(args.tile), "--overlap", str(args.overlap), "--frames", str(frames)],
        env=CASE_ENV.get(case))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--frames", type=int, nargs="+", default=[17, 65])
    p.add_argument("--tile", type=int, default=128, help="tile edge in pixels")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels")
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "decode.json")
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.height, args.width, args.frames[0], args.tile,
                                  args.overlap)))
        return {}
    if args.quick:
        args.height, args.width, args.frames, args.tile, args.overlap = 64, 96, [5, 17], 64, 32
    rows = []
    for frames in args.frames:
        for case in CASES:
            rows.append(_child(case, args, frames))
            r = rows[-1]
            print(f"  {case:16s} {frames:4d} frames: {r['seconds']:7.2f} s, "
                  f"peak RSS {r['peak_rss'] / 2**20:8.1f} MiB", file=sys.stderr)
    q = quality(args.height, args.width, args.frames[0], args.tile, args.overlap)
    by = {(r["case"], r["frames"]): r for r in rows}
    short, long = args.frames[0], args.frames[-1]
    ratios = {
        "time_vidmem_over_diffusers_tiled": {
            f: by[("vidmem_tiled", f)]["seconds"] / by[("diffusers_tiled", f)]["seconds"]
            for f in args.frames},
        "time_vidmem_mmap4m_over_diffusers_tiled": {
            f: by[("vidmem_tiled_mmap4m", f)]["seconds"] / by[("diffusers_tiled", f)]["seconds"]
            for f in args.frames},
        "rss_vidmem_over_diffusers": {
            f: by[("vidmem_tiled", f)]["peak_rss"] / by[("diffusers", f)]["peak_rss"]
            for f in args.frames},
        "rss_growth_long_over_short": {
            c: by[(c, long)]["peak_rss"] / by[(c, short)]["peak_rss"] for c in CASES},
    }
    result = {"config": {"height": args.height, "width": args.width, "frames": args.frames,
                         "tile": args.tile, "overlap": args.overlap, "vae": "tiny Wan 2.1",
                         "threads": os.environ.get("BENCH_THREADS", "2")},
              "rows": rows, "quality": q, "ratios": ratios}
    save_json(args.out, result)
    print(f"\n### Decode: {args.width}x{args.height}, tile {args.tile}px / overlap {args.overlap}px\n")
    print("| case | frames | wall s | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['frames']} | {r['seconds']:.2f} | {r['peak_rss'] / 2**20:.1f} |")
    print("\n| quality vs full decode | PSNR dB | max abs |")
    print("|---|---:|---:|")
    for k, v in q.items():
        print(f"| {k} | {v['psnr']:.2f} | {v['max_abs']:.2e} |")
    print("\nratios:", json.dumps(ratios, indent=1))
    return result


if __name__ == "__main__":
    main()
