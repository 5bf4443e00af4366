"""Long clips through decode capture (issue #22 item 5): a long-video pipeline end to end, the
pipeline's own ``output_type="np"`` + ``export_to_video`` vs ``vidmem.render``.

The pipeline is ``SkyReelsV2DiffusionForcingPipeline`` in long-video mode: ``num_frames`` above
``base_num_frames`` with ``overlap_history``, so it denoises the clip in several overlapping
latent chunks, keeps every chunk in latent space and decodes the WHOLE long latent in one
``vae.decode`` after the last chunk (then ``postprocess_video`` to float frames in [0, 1]). It is
built from seeded random weights, float32: a tiny ``SkyReelsV2Transformer3DModel`` (the zoo's
``tests/zoo/skyreels_zoo.py`` dims, with a rotary table long enough for 480x832), a tiny UMT5
encoder with :func:`vidmem.tiny.tiny_tokenizer`, and the realistic Wan VAE config of
RESULTS.md's headline (``bench_e2e.VAE_CONFIGS["realistic"]``: ``base_dim=4, z_dim=16,
dim_mult=[1, 2, 4, 4], num_res_blocks=1``). One denoising step, no classifier-free guidance
(``guidance_scale=1``): the transformer work is the same in both paths; the point is the decode.

Cases, each in a fresh subprocess per size (peak RSS is the child's own ``VmHWM``):

* ``pipeline``: ``pipe(output_type="np", ...)`` then ``diffusers.utils.export_to_video(frames,
  path, fps=16)`` (imageio-ffmpeg, libx264 crf 25 preset medium; its ffmpeg subprocess's own peak
  is polled and reported apart, as in ``bench_e2e``);
* ``vidmem``: ``vidmem.render(pipe, path, ...)`` with the same call arguments: the pipeline's own
  call runs with ``vae.decode`` captured, then the decode streams to MP4 (``decode_to_video``
  defaults; the writer at ``export_to_video``'s settings, libx264 crf 25 preset medium).

Wall time covers the whole call (text encoder, every chunk's denoising, decode, postprocess,
write); building the models is outside the clock. A case that the machine kills for memory, that
passes ``--mem-cap-gib`` (the parent kills it there, so the run cannot take the shared machine
down) or that runs past ``--time-limit`` is recorded as such ("killed: out of memory at N GiB",
"over the time limit") instead of failing the run.

    python -m benchmarks.bench_long_clip [--quick] [--frames 241 481 961] [--cases pipeline vidmem]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .bench_e2e import CRF, FPS, PRESET, VAE_CONFIGS, SubprocessPeak, _cpu_seconds
from .common import ROOT, save_json

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("pipeline", "vidmem")
BASELINE = "pipeline"
#: Long-video chunking (frames, as the pipeline takes them): chunks of 57 frames (15 latent
#: frames), 17 frames (5 latent frames) of history: each chunk after the first adds 10 latent
#: frames, so 241 / 481 / 961 frames are 6 / 12 / 24 chunks.
BASE_NUM_FRAMES, OVERLAP_HISTORY = 57, 17
#: Quick mode (a test): 64x96, 17 and 33 frames in chunks of 9 frames (3 latent) with 5 frames
#: (2 latent) of history: 3 and 7 chunks.
QUICK = dict(height=64, width=96, frames=[17, 33], base_num_frames=9, overlap_history=5,
             time_limit=300.0)
TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                   in_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                   num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                   rope_max_seq_len=1024)
TEXT_ENCODER = dict(vocab_size=260, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16,
                    feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                    decoder_start_token_id=0)
STEPS = 1


def _chunks(frames: int, base: int, overlap: int) -> int:
    """The pipeline's ``n_iter`` (diffusers ``pipeline_skyreels_v2_diffusion_forcing.py``)."""
    lat, base_lat, over_lat = (frames - 1) // 4 + 1, (base - 1) // 4 + 1, (overlap - 1) // 4 + 1
    if frames <= base:
        return 1
    return 1 + (lat - base_lat - 1) // (base_lat - over_lat) + 1


def _build(seed: int = 0):
    import torch
    from diffusers import (AutoencoderKLWan, SkyReelsV2DiffusionForcingPipeline,
                           SkyReelsV2Transformer3DModel, UniPCMultistepScheduler)
    from transformers import UMT5Config, UMT5EncoderModel

    from vidmem.tiny import tiny_tokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**VAE_CONFIGS["realistic"]).eval()
    torch.manual_seed(seed + 1)
    text_encoder = UMT5EncoderModel(UMT5Config(**TEXT_ENCODER)).eval()
    torch.manual_seed(seed + 2)
    transformer = SkyReelsV2Transformer3DModel(**TRANSFORMER).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=8.0, num_train_timesteps=1000)
    pipe = SkyReelsV2DiffusionForcingPipeline(
        tokenizer=tiny_tokenizer(), text_encoder=text_encoder, transformer=transformer, vae=vae,
        scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(height: int, width: int, frames: int, base: int, overlap: int) -> dict:
    import torch

    return dict(prompt="a tiny cat baking a cake", num_frames=frames, height=height, width=width,
                base_num_frames=base, overlap_history=overlap, addnoise_condition=0, ar_step=0,
                num_inference_steps=STEPS, guidance_scale=1.0, max_sequence_length=16,
                generator=torch.Generator().manual_seed(0))


def run_case(case: str, height: int, width: int, frames: int, base: int, overlap: int,
             out: Path) -> dict:
    """One measurement in this process; returns the row (the child prints it as JSON)."""
    import imageio  # noqa: F401  (imported before the clock, like vidmem's PyAV)
    import imageio_ffmpeg  # noqa: F401
    import torch
    from diffusers.utils import export_to_video

    import vidmem
    from vidmem.memory import current_rss_bytes
    from vidmem.utils import peak_rss_bytes

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    pipe = _build(0)
    call = _call(height, width, frames, base, overlap)
    extra: dict = {}
    setup_rss = current_rss_bytes()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    with SubprocessPeak() as ffmpeg, torch.no_grad():
        if case == "pipeline":
            video = pipe(output_type="np", **call).frames[0]
            n = len(video)
            export_to_video(video, str(out), fps=FPS)
            del video
        elif case == "vidmem":
            report = vidmem.render(pipe, out, fps=FPS,
                                   writer_options={"crf": CRF, "preset": PRESET}, **call)
            n = report.frames
            extra["stage_seconds"] = report.seconds
            extra["decode_baseline_rss"] = report.baseline_rss_bytes
        else:
            raise ValueError(case)
        seconds = time.perf_counter() - t0
    return {"case": case, "frames": n, "seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu0,
            "peak_rss": peak_rss_bytes(), "setup_rss": setup_rss,
            "encoder_subprocess_peak_rss": ffmpeg.peak, "file_bytes": out.stat().st_size,
            "chunks": _chunks(frames, base, overlap), **extra}


def _tree_rss(pid: int) -> int:
    """RSS of ``pid`` and its children (ffmpeg), bytes; 0 once gone."""
    total = 0
    pids, seen = [pid], set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for children in Path(f"/proc/{p}/task").glob("*/children"):
                pids.extend(int(c) for c in children.read_text().split())
        except (OSError, ValueError):
            continue
    return total


def run_child_limited(argv: list[str], time_limit: float, mem_cap: int) -> dict:
    """``python -m benchmarks.bench_long_clip argv`` in a fresh process; the row it prints, or a
    row with ``killed`` set: the kernel's OOM kill (SIGKILL), the parent's ``mem_cap`` (bytes,
    the child tree's RSS) or the ``time_limit`` (seconds)."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_long_clip", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    state = {"max_rss": 0, "why": None}
    done = threading.Event()

    def watch() -> None:
        t0 = time.monotonic()
        while not done.wait(0.2):
            rss = _tree_rss(proc.pid)
            state["max_rss"] = max(state["max_rss"], rss)
            why = ("mem_cap" if rss > mem_cap else
                   "time_limit" if time.monotonic() - t0 > time_limit else None)
            if why:
                state["why"] = why
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    watcher = threading.Thread(target=watch, daemon=True)
    t0 = time.perf_counter()
    watcher.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    watcher.join()
    gib = state["max_rss"] / 2**30
    if state["why"] == "time_limit":
        return {"killed": f"over the time limit ({time_limit / 60:.0f} min)", "seconds": wall,
                "max_rss_seen": state["max_rss"]}
    if state["why"] == "mem_cap":
        return {"killed": f"killed: out of memory at {gib:.1f} GiB (the benchmark's "
                          f"{mem_cap / 2**30:.0f} GiB cap)", "seconds": wall,
                "max_rss_seen": state["max_rss"]}
    if proc.returncode == -signal.SIGKILL:
        return {"killed": f"killed: out of memory at {gib:.1f} GiB (SIGKILL)", "seconds": wall,
                "max_rss_seen": state["max_rss"]}
    if proc.returncode != 0:
        raise RuntimeError(f"bench_long_clip {' '.join(argv)} failed:\n{stderr}")
    return json.loads(stdout.strip().splitlines()[-1])


def _ratios(rows: list[dict], lengths: list[int]) -> dict:
    by = {(r["case"], r["requested_frames"]): r for r in rows if "killed" not in r}

    def ratio(key: str) -> dict:
        return {f: by[("vidmem", f)][key] / by[(BASELINE, f)][key] for f in lengths
                if ("vidmem", f) in by and (BASELINE, f) in by}

    return {"rss_vidmem_over_pipeline": ratio("peak_rss"),
            "time_vidmem_over_pipeline": ratio("seconds"),
            "cpu_time_vidmem_over_pipeline": ratio("cpu_seconds")}


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def table(result: dict) -> str:
    """The markdown table printed by the run and pasted into RESULTS.md."""
    cfg = result["config"]
    by = {(r["case"], r["requested_frames"]): r for r in result["rows"]}
    lines = [f"### Long clip, SkyReelsV2DiffusionForcingPipeline: {cfg['width']}x{cfg['height']}, "
             f"realistic Wan VAE config\n",
             "| case | frames | chunks | wall s | CPU s | peak RSS MiB | RSS vs pipeline "
             "| wall vs pipeline | ffmpeg subprocess peak MiB | file KiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in cfg["frames"]:
        base = by.get((BASELINE, f))
        base = None if base is None or "killed" in base else base
        for c in CASES:
            if (c, f) not in by:
                continue
            r = by[(c, f)]
            chunks = _chunks(f, cfg["base_num_frames"], cfg["overlap_history"])
            if "killed" in r:
                lines.append(f"| {c} | {f} | {chunks} | {r['killed']} (after {r['seconds']:.0f} "
                             f"s) | - | - | - | - | - | - |")
                continue
            vs = (f"{r['peak_rss'] / base['peak_rss']:.2f} | {r['seconds'] / base['seconds']:.2f}"
                  if base else "- | -")
            lines.append(f"| {c} | {r['frames']} | {chunks} | {r['seconds']:.1f} | "
                         f"{r['cpu_seconds']:.1f} | {_mib(r['peak_rss'])} | {vs} | "
                         f"{_mib(r['encoder_subprocess_peak_rss'])} | "
                         f"{r['file_bytes'] / 1024:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['width']}x{QUICK['height']} at {QUICK['frames']} frames")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--frames", type=int, nargs="+", default=[241, 481, 961])
    p.add_argument("--base-num-frames", type=int, default=BASE_NUM_FRAMES)
    p.add_argument("--overlap-history", type=int, default=OVERLAP_HISTORY)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--time-limit", type=float, default=1800.0,
                   help="seconds per case before it is recorded as over the time limit (241 "
                        "frames took ~17 min per case on the shared 2-core machine)")
    p.add_argument("--mem-cap-gib", type=float, default=20.0,
                   help="a case whose RSS (with its ffmpeg) passes this is killed and recorded "
                        "as out of memory")
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "long_clip.json")
    args = p.parse_args(argv)
    if args.quick:
        args.height, args.width, args.frames = QUICK["height"], QUICK["width"], QUICK["frames"]
        args.base_num_frames, args.overlap_history = QUICK["base_num_frames"], QUICK[
            "overlap_history"]
        args.time_limit = min(args.time_limit, QUICK["time_limit"])
    if args.case:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run_case(args.case, args.height, args.width, args.frames[0],
                                      args.base_num_frames, args.overlap_history,
                                      Path(d) / "out.mp4")))
        return {}
    for f in args.frames:
        if f < 1 or (f - 1) % 4:
            p.error(f"--frames: {f} is not 4k+1 (what a Wan latent clip decodes to)")
    rows = []
    started = time.perf_counter()
    for frames in args.frames:
        for case in args.cases:
            row = run_child_limited(
                ["--case", case, "--height", str(args.height), "--width", str(args.width),
                 "--frames", str(frames), "--base-num-frames", str(args.base_num_frames),
                 "--overlap-history", str(args.overlap_history)],
                args.time_limit, int(args.mem_cap_gib * 2**30))
            row["case"], row["requested_frames"] = case, frames
            rows.append(row)
            print(f"  {case:10s} {frames:4d} frames: " + (
                row["killed"] if "killed" in row else
                f"{row['seconds']:7.1f} s, peak RSS {row['peak_rss'] / 2**20:8.1f} MiB"),
                file=sys.stderr, flush=True)
            save_json(args.out, _result(args, rows, started))  # what is measured so far
    result = _result(args, rows, started)
    save_json(args.out, result)
    print("\n" + table(result))
    print("\nratios:", json.dumps(result["ratios"], indent=1))
    return result


def _result(args: argparse.Namespace, rows: list[dict], started: float) -> dict:
    result = {"config": {"height": args.height, "width": args.width, "frames": args.frames,
                         "pipeline": "SkyReelsV2DiffusionForcingPipeline",
                         "base_num_frames": args.base_num_frames,
                         "overlap_history": args.overlap_history,
                         "chunks": {f: _chunks(f, args.base_num_frames, args.overlap_history)
                                    for f in args.frames},
                         "num_inference_steps": STEPS, "guidance_scale": 1.0,
                         "addnoise_condition": 0, "ar_step": 0, "max_sequence_length": 16,
                         "fps": FPS, "dtype": "float32",
                         "vae": {"class": "AutoencoderKLWan", **VAE_CONFIGS["realistic"]},
                         "transformer": {"class": "SkyReelsV2Transformer3DModel", **TRANSFORMER},
                         "text_encoder": {"class": "UMT5EncoderModel", **TEXT_ENCODER},
                         "encoder": f"libx264 crf {CRF} preset {PRESET} yuv420p (both cases)",
                         "time_limit_s": args.time_limit, "mem_cap_gib": args.mem_cap_gib,
                         "threads": os.environ.get("BENCH_THREADS", "2"),
                         "quick": args.quick},
              "elapsed_s": time.perf_counter() - started, "rows": rows}
    result["ratios"] = _ratios(rows, args.frames)
    return result


if __name__ == "__main__":
    main()
