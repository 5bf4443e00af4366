"""End to end: latents in, MP4 on disk. The diffusers way vs vidmem's ``decode_to_video``, and
where vidmem's peak host memory goes.

Each case runs in a fresh subprocess, so its peak RSS (``VmHWM``) is its own, and decodes the
same latents (generated in the child from a fixed seed) with the same Wan VAE (an
``AutoencoderKLWan`` config with seeded random weights: speed and memory depend on shapes, not on
weight values) into an H.264 MP4. Two VAE configs (``--config``):

* ``realistic`` (the headline): ``base_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1`` - Wan's
  structure with every stage present (residual blocks, channel changes, attention), what a new
  user tries first on a CPU;
* ``tiny`` (the earlier benchmarks' config): ``base_dim=2, dim_mult=[1, 1, 1, 1],
  num_res_blocks=0`` - nearly no work per frame, so the fixed costs dominate.

Cases:

* ``diffusers``: what a Wan pipeline run with ``output_type="np"`` followed by
  ``diffusers.utils.export_to_video`` does: ``vae.decode`` (whole clip), then
  ``VideoProcessor.postprocess_video`` (float frames in [0, 1]), then ``export_to_video``
  (imageio-ffmpeg, libx264 at its ``quality=5``, i.e. crf 25, preset medium).
* ``diffusers_tiled``: the same after ``vae.enable_tiling()`` (diffusers' default tiles).
* ``vidmem``: ``vidmem.decode_to_video`` with its default decode options (16-frame chunks; no
  spatial tiling on CPU at these sizes) and the writer set to the same encoder settings as
  ``export_to_video`` (libx264, crf 25, preset medium, yuv420p).
* ``vidmem_untuned``: the same with the host-memory work switched off
  (``VIDMEM_MALLOC_TUNING=0 VIDMEM_CONV_WORKSPACE=0``: glibc's default malloc behaviour and
  torch's unsplit ``slow_conv3d``), i.e. what the decode cost before it.

Wall time covers decode + postprocess + write (the VAE, the latents and the imports are set up
before the clock starts). CPU time (user + system, this process plus its ffmpeg subprocess) is
recorded too: on a shared machine it is the less load-sensitive of the two. ``export_to_video``'s
ffmpeg subprocess is outside the Python process's ``VmHWM``; its own peak is polled and reported
in a separate column (vidmem's encoder runs in-process, inside its peak RSS).

The breakdown (``--breakdown-frames``, default the two shortest lengths): each vidmem case is run
once more under :class:`vidmem.breakdown.MemoryProbe`, which splits the c10 (torch CPU allocator)
peak into live tensors and kernel workspaces. The profiler's own bookkeeping perturbs the heap,
so the peak RSS and the baseline come from the plain run of the same case and length, and the
allocator overhead is what remains: ``peak RSS - baseline - live tensors - kernel workspaces``.

    python -m benchmarks.bench_e2e [--quick] [--config realistic|tiny] [--frames 41 161 321]
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
CASES = ("diffusers", "diffusers_tiled", "vidmem_untuned", "vidmem")
BASELINE = "diffusers"
#: The environment that switches vidmem's host-memory work off (for the ``_untuned`` case).
UNTUNED_ENV = {"VIDMEM_MALLOC_TUNING": "0", "VIDMEM_CONV_WORKSPACE": "0"}
CASE_ENV = {"vidmem_untuned": UNTUNED_ENV}
FPS = 16
#: export_to_video's defaults, as imageio-ffmpeg turns them into x264 options (quality 5 -> crf 25;
#: no preset given -> x264's "medium"); vidmem's writer is set to the same.
CRF, PRESET = 25, "medium"
#: Wan 2.1 VAE configs (``--config``). ``realistic``: what a new user tries first on a CPU - every
#: decoder stage present (a residual block per stage, ``num_res_blocks + 1`` in the decoder,
#: channels 16/8/4 from the mid block to full resolution, mid-block attention), so the decoder's
#: per-frame activations and convolution workspaces are those of Wan's structure, at channel
#: counts a 2-core CPU can decode at 480x832. ``tiny``: the earlier benchmarks' config, the
#: smallest channel counts (2, halved to 1 after each upsampler) and no residual blocks, so the
#: fixed costs (imports, encoder) dominate.
VAE_CONFIGS = {
    "realistic": dict(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1),
    "tiny": dict(base_dim=2, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=0,
                 temperal_downsample=[False, True, True]),
}
#: Quick mode (the test suite runs it): the shortest clip still past x264's lookahead ramp (the
#: encoder's buffers fill over the first ~50 frames), the longest long enough that the
#: baseline's float copies of the clip outweigh the fixed part (torch + diffusers imports,
#: ~400 MiB, and the decoder's per-frame workspace). At 320x192 diffusers' default tiling
#: (256 px tiles) still splits the frame in two. diffusers' tiled decode is ~2x slower than the
#: untiled one and is not part of the quick targets, so quick mode runs it at the shortest
#: length only (it still runs, so it cannot rot), keeping the quick run near a minute.
QUICK = dict(height=192, width=320, frames=[65, 385], config="tiny")


def _setup(config: str, height: int, width: int, frames: int):
    import torch
    from diffusers import AutoencoderKLWan

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    vae_config = VAE_CONFIGS[config]
    vae = AutoencoderKLWan(**vae_config).eval()
    latent_t = (frames - 1) // 4 + 1
    z = torch.randn(1, vae_config["z_dim"], latent_t, height // 8, width // 8,
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


def run_case(case: str, config: str, height: int, width: int, frames: int, out: Path,
             profile: bool = False) -> dict:
    """One measurement in this process; returns the row (the child prints it as JSON).
    ``profile``: run a vidmem case under :class:`vidmem.breakdown.MemoryProbe` (its c10 terms
    are the point; its RSS includes the profiler's own bookkeeping)."""
    import imageio  # noqa: F401  (imported before the clock, like vidmem's PyAV)
    import imageio_ffmpeg  # noqa: F401
    import torch
    from diffusers.utils import export_to_video
    from diffusers.video_processor import VideoProcessor

    from vidmem import decode_to_video, plan_decode
    from vidmem.utils import peak_rss_bytes
    from vidmem.breakdown import MemoryProbe
    from vidmem.memory import current_rss_bytes

    vae, z = _setup(config, height, width, frames)
    processor = VideoProcessor(vae_scale_factor=8)
    extra: dict = {}
    if case == "diffusers_tiled":
        vae.enable_tiling()
        extra["tiling"] = (f"diffusers tiles {vae.tile_sample_min_height}x"
                           f"{vae.tile_sample_min_width}, stride {vae.tile_sample_stride_height}x"
                           f"{vae.tile_sample_stride_width}")
    elif case.startswith("vidmem"):
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
        elif case in ("vidmem", "vidmem_untuned"):
            options = dict(fps=FPS, writer_options={"crf": CRF, "preset": PRESET})
            if profile:
                with MemoryProbe() as probe:
                    report = decode_to_video(vae, z, out, **options)
                extra["breakdown"] = probe.result.to_dict()
            else:
                report = decode_to_video(vae, z, out, **options)
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

    def ratio(case: str, key: str, base: str = BASELINE) -> dict:
        return {f: by[(case, f)][key] / by[(base, f)][key] for f in lengths
                if (case, f) in by and (base, f) in by}

    def growth(case: str, key) -> float | None:
        have = [f for f in lengths if (case, f) in by]
        if len(have) < 2:
            return None
        return key(by[(case, have[-1])]) / key(by[(case, have[0])])

    def over(r: dict) -> int:
        return r["peak_rss"] - r["setup_rss"]

    return {
        "rss_vidmem_over_diffusers": ratio("vidmem", "peak_rss"),
        "time_vidmem_over_diffusers": ratio("vidmem", "seconds"),
        "cpu_time_vidmem_over_diffusers": ratio("vidmem", "cpu_seconds"),
        "rss_diffusers_tiled_over_diffusers": ratio("diffusers_tiled", "peak_rss"),
        "time_diffusers_tiled_over_diffusers": ratio("diffusers_tiled", "seconds"),
        # the host-memory work: vidmem vs the same decode with it switched off
        "over_baseline_vidmem_over_untuned": {
            f: over(by[("vidmem", f)]) / over(by[("vidmem_untuned", f)]) for f in lengths
            if ("vidmem", f) in by and ("vidmem_untuned", f) in by},
        "time_vidmem_over_untuned": ratio("vidmem", "seconds", "vidmem_untuned"),
        "cpu_time_vidmem_over_untuned": ratio("vidmem", "cpu_seconds", "vidmem_untuned"),
        "rss_growth_long_over_short": {
            c: g for c in CASES if (g := growth(c, lambda r: r["peak_rss"])) is not None},
        "over_baseline_growth_long_over_short": {
            c: g for c in CASES if (g := growth(c, over)) is not None},
    }


def _checks(ratios: dict, lengths: list[int]) -> dict:
    """The targets: vidmem's peak RSS over its baseline <= 0.6x that of the untuned decode and
    flat within 5% over the lengths run, decode + write time at most 10% slower than untuned;
    peak RSS <= 0.5x the diffusers way's at the longest length both ran, flat within 10% while
    the diffusers way's grows."""
    checks = {}
    cut = ratios["over_baseline_vidmem_over_untuned"]
    if cut:
        checks["over_baseline_le_0.6x_untuned"] = all(r <= 0.6 for r in cut.values())
    if ratios["time_vidmem_over_untuned"]:
        checks["time_le_1.1x_untuned"] = all(
            r <= 1.10 for r in ratios["time_vidmem_over_untuned"].values())
    over_growth = ratios["over_baseline_growth_long_over_short"]
    if "vidmem" in over_growth:
        checks["over_baseline_flat_within_5pct"] = abs(over_growth["vidmem"] - 1) <= 0.05
    growth = ratios["rss_growth_long_over_short"]
    if "vidmem" in growth:
        checks["rss_flat_within_10pct"] = abs(growth["vidmem"] - 1) <= 0.10
    vs_diffusers = ratios["rss_vidmem_over_diffusers"]
    if vs_diffusers:
        checks["rss_le_half_diffusers_at_longest_common"] = vs_diffusers[max(vs_diffusers)] <= 0.5
    if BASELINE in growth:
        checks["diffusers_rss_grows"] = growth[BASELINE] > 1.10
    return checks


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def table(result: dict) -> str:
    """The markdown tables printed by the run and pasted into RESULTS.md."""
    cfg = result["config"]
    by = {(r["case"], r["requested_frames"]): r for r in result["rows"]}
    lines = [f"### End to end (decode + write MP4): {cfg['width']}x{cfg['height']}, "
             f"{cfg['config']} Wan VAE config\n",
             "| case | frames | wall s | CPU s | peak RSS MiB | over baseline MiB "
             "| RSS vs diffusers | wall vs diffusers | ffmpeg subprocess peak MiB | file KiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in cfg["frames"]:
        base = by.get((BASELINE, f))
        for c in CASES:
            if (c, f) not in by:
                continue
            r = by[(c, f)]
            vs = (f"{r['peak_rss'] / base['peak_rss']:.2f} | {r['seconds'] / base['seconds']:.2f}"
                  if base else "- | -")
            lines.append(f"| {c} | {r['frames']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                         f"{_mib(r['peak_rss'])} | {_mib(r['peak_rss'] - r['setup_rss'])} | "
                         f"{vs} | {_mib(r['encoder_subprocess_peak_rss'])} | "
                         f"{r['file_bytes'] / 1024:.0f} |")
    ratios = result.get("ratios", {})
    lines.append("")
    for key, label in (("rss_growth_long_over_short", "peak RSS growth"),
                       ("over_baseline_growth_long_over_short", "growth of peak over baseline")):
        if ratios.get(key):
            lines.append(f"{label}, shortest -> longest length run: "
                         + ", ".join(f"{c} x{g:.3f}" for c, g in ratios[key].items()))
    if result.get("breakdown"):
        lines += ["", breakdown_table(result)]
    return "\n".join(lines)


def breakdown(rows: list[dict], profiled: list[dict]) -> list[dict]:
    """Per profiled (case, length): baseline and peak RSS from the plain run, live tensors and
    kernel workspaces from the profiled one, allocator overhead the rest (MiB-free bytes)."""
    by = {(r["case"], r["requested_frames"]): r for r in rows}
    out = []
    for p in profiled:
        plain = by.get((p["case"], p["requested_frames"]))
        if plain is None:
            continue
        b = p["breakdown"]
        baseline, peak = plain["setup_rss"], plain["peak_rss"]
        out.append({
            "case": p["case"], "frames": p["requested_frames"], "baseline": baseline,
            "live_tensors": b["live_tensors"], "kernel_workspaces": b["kernel_workspaces"],
            "allocator_overhead": peak - baseline - b["live_tensors"] - b["kernel_workspaces"],
            "peak_rss": peak, "over_baseline": peak - baseline,
            "live_tensor_peak": b["live_tensor_peak"],
            "largest_workspace": b["largest_workspace"],
            "largest_workspace_op": b["largest_workspace_op"],
            "profiled_run_peak_rss": b["peak_rss"],
        })
    return out


def breakdown_table(result: dict) -> str:
    cfg = result["config"]
    lines = [f"### Where the peak goes: {cfg['width']}x{cfg['height']}, {cfg['config']} Wan VAE "
             f"config (MiB)\n",
             "| case | frames | baseline | live tensors | kernel workspaces | allocator overhead "
             "| peak RSS | over baseline | largest workspace (op) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for b in result["breakdown"]:
        lines.append(f"| {b['case']} | {b['frames']} | {_mib(b['baseline'])} | "
                     f"{_mib(b['live_tensors'])} | {_mib(b['kernel_workspaces'])} | "
                     f"{_mib(b['allocator_overhead'])} | {_mib(b['peak_rss'])} | "
                     f"{_mib(b['over_baseline'])} | {_mib(b['largest_workspace'])} "
                     f"({b['largest_workspace_op']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['width']}x{QUICK['height']} at {QUICK['frames']} frames, "
                        f"{QUICK['config']} config")
    p.add_argument("--config", choices=sorted(VAE_CONFIGS), default="realistic")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--frames", type=int, nargs="+", default=[41, 161, 321])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--baseline-max-frames", type=int, default=None,
                   help="run the diffusers and vidmem_untuned cases only up to this length "
                        "(they are as slow as vidmem; the 321-frame rows cost the most)")
    p.add_argument("--breakdown-frames", type=int, nargs="*", default=None,
                   help="lengths at which the vidmem cases are also profiled (default: the two "
                        "shortest; none with an empty list)")
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "e2e.json",
                   help="JSON path; the plot goes next to it as e2e_rss.png")
    p.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run_case(args.case, args.config, args.height, args.width,
                                      args.frames[0], Path(d) / "out.mp4", args.profile)))
        return {}
    if args.quick:
        args.height, args.width, args.frames, args.config = (
            QUICK["height"], QUICK["width"], QUICK["frames"], QUICK["config"])
        if args.breakdown_frames is None:
            args.breakdown_frames = QUICK["frames"][:1]
    for f in args.frames:
        if f < 1 or (f - 1) % 4:
            p.error(f"--frames: {f} is not 4k+1 (what a Wan latent clip decodes to)")
    profile_at = (sorted(args.frames)[:2] if args.breakdown_frames is None
                  else args.breakdown_frames)
    rows, profiled = [], []
    started = time.perf_counter()

    def child(case: str, frames: int, profile: bool = False) -> dict:
        row = run_child("benchmarks.bench_e2e", [
            "--case", case, "--config", args.config, "--height", str(args.height),
            "--width", str(args.width), "--frames", str(frames)]
            + (["--profile"] if profile else []), env=CASE_ENV.get(case))
        row["requested_frames"] = frames
        print(f"  {case:16s} {frames:4d} frames{' (profiled)' if profile else ''}: "
              f"{row['seconds']:7.2f} s, peak RSS {row['peak_rss'] / 2**20:8.1f} MiB",
              file=sys.stderr, flush=True)
        return row

    for frames in args.frames:
        for case in args.cases:
            if args.quick and case == "diffusers_tiled" and frames != args.frames[0]:
                continue
            if (args.baseline_max_frames is not None and case != "vidmem"
                    and frames > args.baseline_max_frames):
                continue
            rows.append(child(case, frames))
            if case.startswith("vidmem") and frames in profile_at:
                profiled.append(child(case, frames, profile=True))
    vae = {"class": "AutoencoderKLWan", **VAE_CONFIGS[args.config]}
    result = {"config": {"config": args.config, "height": args.height, "width": args.width,
                         "frames": args.frames, "fps": FPS, "vae": vae,
                         "encoder": f"libx264 crf {CRF} preset {PRESET} yuv420p (all cases)",
                         "vidmem_options": "decode_to_video defaults (16-frame chunks, untiled "
                                           "on CPU below 1920x1088), writer crf/preset as above",
                         "untuned_env": UNTUNED_ENV,
                         "baseline_max_frames": args.baseline_max_frames,
                         "threads": os.environ.get("BENCH_THREADS", "2"),
                         "quick": args.quick},
              "elapsed_s": time.perf_counter() - started,
              "rows": rows, "profiled_rows": profiled,
              "breakdown": breakdown(rows, profiled)}
    result["ratios"] = _ratios(rows, args.frames)
    result["checks"] = _checks(result["ratios"], args.frames)
    save_json(args.out, result)
    if not args.no_plot:
        plot = plot_rss_vs_frames(rows, f"Decode + write MP4 ({args.config} Wan VAE): "
                                        f"peak RSS vs frames", args.out.with_name("e2e_rss.png"))
        if plot is not None:
            print(f"plot: {plot}", file=sys.stderr)
    print("\n" + table(result))
    print("\nratios:", json.dumps(result["ratios"], indent=1))
    print("\nchecks:", json.dumps(result["checks"], indent=1))
    return result


if __name__ == "__main__":
    main()
