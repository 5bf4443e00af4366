"""End to end: latents in, MP4 on disk. The diffusers way vs vidmem's ``decode_to_video``.

Each case runs in a fresh subprocess, so its peak RSS (``VmHWM``) is its own, and decodes the
same latents (generated in the child from a fixed seed) with the same Wan VAE (a very small
``AutoencoderKLWan`` config with seeded random weights: speed and memory depend on shapes, not on
weight values) into an H.264 MP4:

* ``diffusers``: what a Wan pipeline run with ``output_type="np"`` followed by
  ``diffusers.utils.export_to_video`` does: ``vae.decode`` (whole clip), then
  ``VideoProcessor.postprocess_video`` (float frames in [0, 1]), then ``export_to_video``
  (imageio-ffmpeg, libx264 at its ``quality=5``, i.e. crf 25, preset medium).
* ``diffusers_tiled``: the same after ``vae.enable_tiling()`` (diffusers' default tiles).
* ``vidmem``: ``vidmem.decode_to_video`` with its default decode options (16-frame chunks; no
  spatial tiling on CPU at these sizes) and the writer set to the same encoder settings as
  ``export_to_video`` (libx264, crf 25, preset medium, yuv420p).

Wall time covers decode + postprocess + write (the VAE, the latents and the imports are set up
before the clock starts). CPU time (user + system, this process plus its ffmpeg subprocess) is
recorded too: on a shared machine it is the less load-sensitive of the two. ``export_to_video``'s
ffmpeg subprocess is outside the Python process's ``VmHWM``; its own peak is polled and reported
in a separate column (vidmem's encoder runs in-process, inside its peak RSS).

    python -m benchmarks.bench_e2e [--quick] [--height 480 --width 832] [--frames 33 81 161 321]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import plot_rss_vs_frames, run_child, save_json

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("diffusers", "diffusers_tiled", "vidmem")
BASELINE = "diffusers"
FPS = 16
#: export_to_video's defaults, as imageio-ffmpeg turns them into x264 options (quality 5 -> crf 25;
#: no preset given -> x264's "medium"); vidmem's writer is set to the same.
CRF, PRESET = 25, "medium"
#: One tiny Wan 2.1 VAE for every case: the smallest channel counts (2, halved to 1 after each
#: upsampler) and one residual block per decoder stage (``num_res_blocks + 1``), so a 480x832
#: decode of hundreds of frames runs on a 2-core CPU. Its decoder is structurally Wan's (causal
#: 3D convs with a per-conv frame cache, mid-block attention, 4x temporal / 8x spatial).
#: ``vidmem.tiny.tiny_wan_vae`` (base_dim 8, two blocks per stage) measured 2-3x slower per
#: frame here, with a ~3x larger per-frame conv workspace, which both cases pay alike.
VAE_CONFIG = dict(base_dim=2, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=0,
                  temperal_downsample=[False, True, True])
#: Quick mode (the test suite runs it): the shortest clip still past x264's lookahead ramp (the
#: encoder's buffers fill over the first ~50 frames), the longest long enough that the
#: baseline's float copies of the clip outweigh the fixed part (torch + diffusers imports,
#: ~400 MiB, and the decoder's per-frame workspace). At 320x192 diffusers' default tiling
#: (256 px tiles) still splits the frame in two. diffusers' tiled decode is ~2x slower than the
#: untiled one and is not part of the quick targets, so quick mode runs it at the shortest
#: length only (it still runs, so it cannot rot), keeping the quick run near a minute.
QUICK = dict(height=192, width=320, frames=[65, 385])


def _setup(height: int, width: int, frames: int):
    import torch
    from diffusers import AutoencoderKLWan

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    latent_t = (frames - 1) // 4 + 1
    z = torch.randn(1, VAE_CONFIG["z_dim"], latent_t, height // 8, width // 8,
                    generator=torch.Generator().manual_seed(0))
    return vae, z


class SubprocessPeak:
    """Track the peak RSS of this process's ffmpeg children while a case runs.

    ``export_to_video`` encodes in an ffmpeg subprocess (imageio-ffmpeg), whose memory this
    process's ``VmHWM`` does not include (and ``RUSAGE_CHILDREN`` would count the parent's pages
    at fork). So poll each live ffmpeg child's own ``VmHWM`` (monotonic: the last reading before
    it exits is its peak, up to one polling interval). vidmem encodes in-process: its encoder is
    already inside its peak RSS.
    """

    def __init__(self, interval: float = 0.05):
        import threading

        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        for children in Path("/proc/self/task").glob("*/children"):
            try:
                pids = children.read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    if not Path(f"/proc/{pid}/comm").read_text().startswith("ffmpeg"):
                        continue
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
                except (OSError, ValueError):
                    continue

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def __enter__(self) -> "SubprocessPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its waited-for children (ffmpeg)."""
    import resource

    return sum(getattr(resource.getrusage(who), f) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))


def run_case(case: str, height: int, width: int, frames: int, out: Path) -> dict:
    """One measurement in this process; returns the row (the child prints it as JSON)."""
    import imageio  # noqa: F401  (imported before the clock, like vidmem's PyAV)
    import imageio_ffmpeg  # noqa: F401
    import torch
    from diffusers.utils import export_to_video
    from diffusers.video_processor import VideoProcessor

    from vidmem import decode_to_video, peak_rss_bytes, plan_decode
    from vidmem.memory import current_rss_bytes

    vae, z = _setup(height, width, frames)
    processor = VideoProcessor(vae_scale_factor=8)
    extra: dict = {}
    if case == "diffusers_tiled":
        vae.enable_tiling()
        extra["tiling"] = (f"diffusers tiles {vae.tile_sample_min_height}x"
                           f"{vae.tile_sample_min_width}, stride {vae.tile_sample_stride_height}x"
                           f"{vae.tile_sample_stride_width}")
    elif case == "vidmem":
        extra["plan"] = plan_decode(vae, z).summary()
    setup_rss = current_rss_bytes()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    with SubprocessPeak() as ffmpeg:
        if case in ("diffusers", "diffusers_tiled"):
            # WanPipeline.__call__ with output_type="np", then the user's export_to_video call.
            with torch.no_grad():
                video = vae.decode(z, return_dict=False)[0]
            video = processor.postprocess_video(video, output_type="np")
            export_to_video(video[0], str(out), fps=FPS)
            n = len(video[0])
            del video
        elif case == "vidmem":
            report = decode_to_video(vae, z, out, fps=FPS,
                                     writer_options={"crf": CRF, "preset": PRESET})
            n = report.frames
            extra["stage_seconds"] = report.seconds
        else:
            raise ValueError(case)
        seconds = time.perf_counter() - t0
    return {"case": case, "frames": n, "seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu0,
            "peak_rss": peak_rss_bytes(), "setup_rss": setup_rss,
            "encoder_subprocess_peak_rss": ffmpeg.peak, "file_bytes": out.stat().st_size,
            **extra}


def _ratios(rows: list[dict], lengths: list[int]) -> dict:
    by = {(r["case"], r["requested_frames"]): r for r in rows}
    lo, hi = lengths[0], lengths[-1]

    def ratio(case: str, key: str) -> dict:
        return {f: by[(case, f)][key] / by[(BASELINE, f)][key] for f in lengths
                if (case, f) in by}

    return {
        "rss_vidmem_over_diffusers": ratio("vidmem", "peak_rss"),
        "time_vidmem_over_diffusers": ratio("vidmem", "seconds"),
        "rss_diffusers_tiled_over_diffusers": ratio("diffusers_tiled", "peak_rss"),
        "time_diffusers_tiled_over_diffusers": ratio("diffusers_tiled", "seconds"),
        "cpu_time_vidmem_over_diffusers": ratio("vidmem", "cpu_seconds"),
        "rss_growth_long_over_short": {
            c: by[(c, hi)]["peak_rss"] / by[(c, lo)]["peak_rss"] for c in CASES
            if (c, hi) in by and (c, lo) in by},
    }


def _checks(ratios: dict, lengths: list[int]) -> dict:
    """The issue's targets: vidmem's peak RSS at the longest clip <= 0.5x the diffusers way's,
    flat within 10% from the shortest to the longest while the baseline's grows, and
    decode + write wall time no slower than the baseline's at every length."""
    growth = ratios["rss_growth_long_over_short"]
    return {
        "rss_at_longest_le_half": ratios["rss_vidmem_over_diffusers"][lengths[-1]] <= 0.5,
        "vidmem_rss_flat_within_10pct": abs(growth["vidmem"] - 1) <= 0.10,
        "baseline_rss_grows": growth[BASELINE] > 1.10,
        "wall_time_not_slower": all(r <= 1.0 for r in
                                    ratios["time_vidmem_over_diffusers"].values()),
    }


def table(result: dict) -> str:
    """The markdown table (and ratios) printed by the run and pasted into RESULTS.md."""
    cfg = result["config"]
    by = {(r["case"], r["requested_frames"]): r for r in result["rows"]}
    lines = [f"### End to end (decode + write MP4): {cfg['width']}x{cfg['height']}, "
             f"tiny Wan VAE\n",
             "| case | frames | wall s | CPU s | peak RSS MiB | RSS vs diffusers "
             "| wall vs diffusers | CPU vs diffusers | ffmpeg subprocess peak MiB | file KiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in cfg["frames"]:
        base = by[(BASELINE, f)]
        for c in CASES:
            if (c, f) not in by:
                continue
            r = by[(c, f)]
            lines.append(f"| {c} | {r['frames']} | {r['seconds']:.2f} | {r['cpu_seconds']:.1f} | "
                         f"{r['peak_rss'] / 2**20:.1f} | {r['peak_rss'] / base['peak_rss']:.2f} | "
                         f"{r['seconds'] / base['seconds']:.2f} | "
                         f"{r['cpu_seconds'] / base['cpu_seconds']:.2f} | "
                         f"{r['encoder_subprocess_peak_rss'] / 2**20:.0f} | "
                         f"{r['file_bytes'] / 1024:.0f} |")
    growth = result["ratios"]["rss_growth_long_over_short"]
    lines.append("")
    lines.append(f"peak RSS growth {cfg['frames'][0]} -> {cfg['frames'][-1]} frames: "
                 + ", ".join(f"{c} x{g:.2f}" for c, g in growth.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['width']}x{QUICK['height']} at {QUICK['frames']} frames")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--frames", type=int, nargs="+", default=[33, 81, 161, 321])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "e2e.json",
                   help="JSON path; the plot goes next to it as e2e_rss.png")
    p.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run_case(args.case, args.height, args.width, args.frames[0],
                                      Path(d) / "out.mp4")))
        return {}
    if args.quick:
        args.height, args.width, args.frames = QUICK["height"], QUICK["width"], QUICK["frames"]
    for f in args.frames:
        if f < 1 or (f - 1) % 4:
            p.error(f"--frames: {f} is not 4k+1 (what a Wan latent clip decodes to)")
    rows = []
    started = time.perf_counter()
    for frames in args.frames:
        for case in args.cases:
            if args.quick and case == "diffusers_tiled" and frames != args.frames[0]:
                continue
            row = run_child("benchmarks.bench_e2e", [
                "--case", case, "--height", str(args.height), "--width", str(args.width),
                "--frames", str(frames)])
            row["requested_frames"] = frames
            rows.append(row)
            print(f"  {case:16s} {frames:4d} frames: {row['seconds']:7.2f} s, peak RSS "
                  f"{row['peak_rss'] / 2**20:8.1f} MiB", file=sys.stderr, flush=True)
    result = {"config": {"height": args.height, "width": args.width, "frames": args.frames,
                         "fps": FPS, "vae": {"class": "AutoencoderKLWan", **VAE_CONFIG},
                         "encoder": f"libx264 crf {CRF} preset {PRESET} yuv420p (all cases)",
                         "vidmem_options": "decode_to_video defaults (16-frame chunks, untiled "
                                           "on CPU below 1920x1088), writer crf/preset as above",
                         "threads": os.environ.get("BENCH_THREADS", "2"),
                         "quick": args.quick},
              "elapsed_s": time.perf_counter() - started,
              "rows": rows}
    if {BASELINE, "vidmem"} <= set(args.cases):
        result["ratios"] = _ratios(rows, args.frames)
        result["checks"] = _checks(result["ratios"], args.frames)
    save_json(args.out, result)
    if not args.no_plot:
        plot = plot_rss_vs_frames(rows, "Decode + write MP4: peak RSS vs frames",
                                  args.out.with_name("e2e_rss.png"))
        if plot is not None:
            print(f"plot: {plot}", file=sys.stderr)
    if "ratios" in result:
        print("\n" + table(result))
        print("\nratios:", json.dumps(result["ratios"], indent=1))
        print("\nchecks:", json.dumps(result["checks"], indent=1))
    return result


if __name__ == "__main__":
    main()
