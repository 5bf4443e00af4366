"""Writing frames to MP4: vidmem ``VideoWriter`` vs ``diffusers.utils.export_to_video`` vs
imageio's streaming writer, in one run, each case in a fresh subprocess (peak RSS from VmHWM).

Frames are produced the way each user would have them: a diffusers user holds the whole clip as
float frames in [0, 1] (``output_type="np"``) and passes the list to ``export_to_video``; a
streaming user generates chunks of 16 frames and hands each to the writer. Content is smooth
moving gradients (what generated video looks like to an encoder). vidmem and imageio's streaming
writer both encode with libx264 crf 18, preset fast.

Wall time is load-sensitive on a shared machine, so every case runs ``--repeat`` times, the cases
interleaved round by round, and the median is reported (all samples are in the JSON). CPU time
(user + system, including imageio's and export_to_video's ffmpeg subprocess) is recorded too.

    python -m benchmarks.bench_writer [--quick] [--frames 150 600] [--height 480 --width 832]
                                      [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import run_child, save_json

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("vidmem", "export_to_video", "imageio_stream")
CHUNK = 16


def make_chunk(start: int, n: int, height: int, width: int) -> np.ndarray:
    """Float frames in [0, 1], (n, H, W, 3): moving gradients."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.arange(start, start + n, dtype=np.float32)[:, None, None]
    r = 0.5 + 0.4 * np.sin(xx / 60 + t / 9)
    g = 0.5 + 0.4 * np.cos(yy / 45 - t / 11)
    b = 0.5 + 0.4 * np.sin((xx + yy) / 90 + t / 7)
    return np.stack([r, g, b], -1)


def _cpu_seconds() -> float:
    import resource

    return sum(getattr(resource.getrusage(who), f) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))


def run_case(case: str, frames: int, height: int, width: int, out: Path) -> dict:
    from vidmem.utils import peak_rss_bytes

    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    if case == "vidmem":
        from vidmem import VideoWriter

        with VideoWriter(out, 16) as w:
            for s in range(0, frames, CHUNK):
                w.write(make_chunk(s, min(CHUNK, frames - s), height, width))
    elif case == "export_to_video":
        from diffusers.utils import export_to_video

        video = [f for s in range(0, frames, CHUNK)
                 for f in make_chunk(s, min(CHUNK, frames - s), height, width)]
        export_to_video(video, str(out), fps=16)
    elif case == "imageio_stream":
        import imageio

        with imageio.get_writer(str(out), fps=16, codec="libx264", quality=None,
                                output_params=["-crf", "18", "-preset", "fast"],
                                macro_block_size=1) as w:
            for s in range(0, frames, CHUNK):
                for f in make_chunk(s, min(CHUNK, frames - s), height, width):
                    w.append_data(np.rint(f * 255).astype(np.uint8))
    else:
        raise ValueError(case)
    seconds = time.perf_counter() - t0
    return {"case": case, "frames": frames, "seconds": seconds,
            "cpu_seconds": _cpu_seconds() - cpu0, "peak_rss": peak_rss_bytes(),
            "file_bytes": out.stat().st_size}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--frames", type=int, nargs="+", default=[150, 600])
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--repeat", type=int, default=3, help="interleaved runs per case (median)")
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "writer.json")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.height, args.width, args.repeat = [30, 120], 240, 416, 1
    if args.case:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run_case(args.case, args.frames[0], args.height, args.width,
                                      Path(d) / "out.mp4")))
        return {}
    samples = []
    for frames in args.frames:
        for round_ in range(args.repeat):
            for case in CASES:
                r = run_child("benchmarks.bench_writer", [
                    "--case", case, "--frames", str(frames), "--height", str(args.height),
                    "--width", str(args.width)])
                r["round"] = round_
                samples.append(r)
                print(f"  {case:16s} {frames:4d} frames: {r['seconds']:6.2f} s, peak RSS "
                      f"{r['peak_rss'] / 2**20:7.1f} MiB", file=sys.stderr)
    rows = []
    for frames in args.frames:
        for case in CASES:
            mine = [r for r in samples if r["case"] == case and r["frames"] == frames]
            rows.append({"case": case, "frames": frames,
                         "seconds": statistics.median(r["seconds"] for r in mine),
                         "cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
                         "peak_rss": max(r["peak_rss"] for r in mine),
                         "file_bytes": mine[0]["file_bytes"], "samples": len(mine)})
    by = {(r["case"], r["frames"]): r for r in rows}
    lo, hi = args.frames[0], args.frames[-1]

    def ratio(case: str, base: str, key: str) -> dict:
        return {f: by[(case, f)][key] / by[(base, f)][key] for f in args.frames}

    ratios = {
        "rss_vidmem_over_export": ratio("vidmem", "export_to_video", "peak_rss"),
        "time_vidmem_over_export": ratio("vidmem", "export_to_video", "seconds"),
        "time_vidmem_over_imageio_stream": ratio("vidmem", "imageio_stream", "seconds"),
        "cpu_time_vidmem_over_imageio_stream": ratio("vidmem", "imageio_stream", "cpu_seconds"),
        "rss_growth_mib": {c: (by[(c, hi)]["peak_rss"] - by[(c, lo)]["peak_rss"]) / 2**20
                           for c in CASES},
    }
    result = {"config": {"frames": args.frames, "height": args.height, "width": args.width,
                         "chunk": CHUNK, "repeat": args.repeat},
              "rows": rows, "samples": samples, "ratios": ratios}
    save_json(args.out, result)
    print(f"\n### Writer: {args.width}x{args.height}, chunks of {CHUNK}, median of "
          f"{args.repeat} interleaved runs\n")
    print("| case | frames | wall s | CPU s | peak RSS MiB | file KiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['frames']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
              f"{r['peak_rss'] / 2**20:.1f} | {r['file_bytes'] / 1024:.0f} |")
    print("\nratios:", json.dumps(ratios, indent=1))
    return result


if __name__ == "__main__":
    main()
