"""Run every benchmark (each case in its own subprocess), print the tables, write JSON and plots.

Benchmarks: VAE decode alone (``bench_decode``), MP4 writing alone (``bench_writer``), end to
end, latents to MP4, the diffusers way vs ``vidmem.decode_to_video``, with the breakdown of
vidmem's peak host memory (``bench_e2e``, the realistic Wan config at 41 / 161 / 321 frames and
the earlier tiny config at 33 to 321 frames; ``--quick``: the tiny config only), a long-video
pipeline end to end (``bench_long_clip``: ``SkyReelsV2DiffusionForcingPipeline`` in overlapping
chunks with one whole-clip decode, its own ``output_type="np"`` + ``export_to_video`` vs
``vidmem.render``, 480x832 at 241 / 481 / 961 frames; ``--quick``: 64x96 at 17 / 33), decode
quality per VAE family on tiny configs (``bench_quality``) and on the published configs
(``bench_quality_published``: the quality headline), simulated vs measured stage peaks for
offload plans (``bench_plan``; its GPU columns with ``--device cuda``), and with ``--device
cuda`` the offload comparison (``bench_offload``: diffusers' offload levers vs vidmem plans, peak
device memory and time) and latents to MP4 on the GPU with the real Wan 2.1 VAE
(``bench_gpu_decode``). Scale-out (``bench_distributed``: one decode split over 1, 2, ... ranks,
and a batch of clips over 1, 2, ... ranks, each a ``torchrun`` job) runs in the full run only:
its jobs take minutes even at the smallest sizes.

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--out DIR]

``--quick`` uses the smallest sizes (the test suite runs it so the benchmarks never rot). Plots
need matplotlib (``pip install -e ".[bench]"``); without it the JSON and tables are still written.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from . import (bench_decode, bench_distributed, bench_e2e, bench_gpu_decode, bench_long_clip,
               bench_offload, bench_plan, bench_quality, bench_quality_published, bench_writer)
from .common import plot_rss_vs_frames

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


PLOTS = (("decode", "VAE decode: peak RSS vs frames"),
         ("writer", "MP4 writing: peak RSS vs frames"),
         ("e2e", "Decode + write MP4 (realistic Wan VAE): peak RSS vs frames"),
         ("e2e_tiny", "Decode + write MP4 (tiny Wan VAE): peak RSS vs frames"),
         ("long_clip", "Long clip, SkyReels-V2 diffusion forcing: peak RSS vs frames"))


def _plot(results: dict, out: Path) -> list[Path]:
    written = []
    for name, title in PLOTS:
        if name not in results:
            continue
        rows = [r for r in results[name]["rows"] if "peak_rss" in r]  # not killed cases
        path = plot_rss_vs_frames(rows, title, out / f"{name}_rss.png")
        if path is None:
            print("matplotlib not installed: skipping plots (pip install -e '.[bench]')",
                  file=sys.stderr)
            return []
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda adds the offload and GPU decode benchmarks (needs a CUDA device)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    quick = ["--quick"] if args.quick else []
    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.machine()},
        "decode": bench_decode.main(quick + ["--out", str(args.out / "decode.json")]),
        "writer": bench_writer.main(quick + ["--out", str(args.out / "writer.json")]),
        "e2e": bench_e2e.main(quick + ["--out", str(args.out / "e2e.json"), "--no-plot"]),
        **({} if args.quick else {"e2e_tiny": bench_e2e.main(
            ["--config", "tiny", "--frames", "33", "81", "161", "321",
             "--out", str(args.out / "e2e_tiny.json"), "--no-plot"])}),
        "long_clip": bench_long_clip.main(quick + ["--out", str(args.out / "long_clip.json")]),
        "quality": bench_quality.main(quick + ["--out", str(args.out / "quality.json")]),
        "quality_published": bench_quality_published.main(
            quick + ["--out", str(args.out / "quality_published.json")]),
        "plan": bench_plan.main(quick + ["--device", args.device,
                                         "--out", str(args.out / "plan.json")]),
    }
    if args.device == "cuda":
        results["offload"] = bench_offload.main(quick + ["--out", str(args.out / "offload.json")])
        results["gpu_decode"] = bench_gpu_decode.main(
            (["--frames", "17", "33", "--height", "240", "--width", "416"] if args.quick else [])
            + ["--out", str(args.out / "gpu_decode.json")])
    if not args.quick:  # several torchrun jobs: minutes even at the smallest sizes
        scale = ["--out", str(args.out / "distributed.json")]
        if args.device == "cuda":
            import torch

            count = torch.cuda.device_count()
            scale += ["--device", "cuda", "--ranks",
                      *[str(n) for n in (1, 2, 4, 8) if n <= count]]
        results["distributed"] = bench_distributed.main(scale)
    plots = _plot(results, args.out)
    (args.out / "all.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {args.out / 'all.json'}" + "".join(f"\nplot: {p}" for p in plots))
    return results


if __name__ == "__main__":
    main()
