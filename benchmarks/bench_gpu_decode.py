"""Latents to MP4 on a CUDA GPU with the real Wan 2.1 VAE: the diffusers way vs vidmem.

The VAE is ``AutoencoderKLWan`` with Wan 2.1's published shapes (``vidmem.shapes.WAN21_VAE``,
random weights from a fixed seed, bf16 by default: speed and memory depend on shapes, not on
weight values); the latents are random, 480x832 by default, at two or more clip lengths. Each
case runs in a fresh subprocess, so its peaks are its own:

* ``diffusers``: what a Wan pipeline with ``output_type="np"`` does, then the write: the whole
  clip's ``vae.decode``, ``VideoProcessor.postprocess_video`` (float frames on the host), then
  every frame encoded (PyAV, libx264, crf 18, preset fast, yuv420p - what ``export_to_video``
  pipes into ffmpeg, which is not installed on the GPU machines).
* ``diffusers_tiled``: the same after ``vae.enable_tiling()``.
* ``vidmem``: ``vidmem.decode_to_video`` with its defaults and the same encoder settings (uint8
  on the device, one reused pinned staging buffer, encode overlapped with the next decode).

Reported per case: wall time (decode + postprocess + write; the VAE and the latents are set up
before the clock starts), ``torch.cuda.max_memory_allocated`` over what the weights and the
latents hold, and peak host RSS (``VmHWM``).

    python -m benchmarks.bench_gpu_decode [--frames 81 161] [--height 480] [--width 832]

Needs CUDA; without it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .common import run_child, save_json

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("diffusers", "diffusers_tiled", "vidmem")
FPS, CRF, PRESET = 16, 18, "fast"
MiB = 1 << 20


def _encode_all(frames, path: Path) -> None:
    """Every float frame in [0, 1] to uint8, then into one H.264 MP4 (the baseline's write)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(CRF), "preset": PRESET}
        for frame in frames:
            rgb = np.ascontiguousarray((frame * 255).round().clip(0, 255).astype(np.uint8))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def run_case(case: str, frames: int, height: int, width: int, dtype: str, out: Path,
             device: str = "cuda") -> dict:
    """One measurement in this process (``device="cpu"`` only to smoke-test the script)."""
    import torch
    from diffusers import AutoencoderKLWan
    from diffusers.video_processor import VideoProcessor

    import vidmem
    from vidmem.shapes import WAN21_VAE

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**WAN21_VAE).to(device, getattr(torch, dtype)).eval()
    latent_t = (frames - 1) // 4 + 1
    z = torch.randn(1, vae.config.z_dim, latent_t, height // 8, width // 8,
                    generator=torch.Generator().manual_seed(0)).to(device, vae.dtype)
    extra: dict = {}
    if case == "diffusers_tiled":
        vae.enable_tiling()
        extra["tiling"] = (f"{vae.tile_sample_min_height}x{vae.tile_sample_min_width} px, "
                           f"stride {vae.tile_sample_stride_height}x{vae.tile_sample_stride_width}")
    elif case == "vidmem":
        extra["plan"] = vidmem.plan_decode(vae, z).summary()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated() if cuda else 0
    t0 = time.perf_counter()
    if case.startswith("diffusers"):
        with torch.no_grad():
            video = vae.decode(z, return_dict=False)[0]
        video = VideoProcessor(vae_scale_factor=8).postprocess_video(video, output_type="np")[0]
        _encode_all(video, out)
        n = len(video)
        del video
    else:
        report = vidmem.decode_to_video(vae, z, out, fps=FPS,
                                        writer_options={"crf": CRF, "preset": PRESET})
        n = report.frames
        extra["stage_seconds"] = report.seconds
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"case": case, "frames": n, "seconds": seconds,
            "cuda_peak_over_held": torch.cuda.max_memory_allocated() - held if cuda else 0,
            "cuda_held": held, "peak_rss": vidmem.utils.peak_rss_bytes(),
            "file_bytes": out.stat().st_size, **extra}


def table(rows: list[dict]) -> str:
    base = {r["frames"]: r for r in rows if r["case"] == "diffusers" and "error" not in r}

    def ratio(r: dict, key: str) -> str:
        b = base.get(r["frames"])
        return f"{r[key] / b[key]:.2f}" if b and b[key] else ""

    lines = ["| case | frames | wall s | x diffusers | CUDA peak over weights+latents MiB | "
             "x diffusers | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['frames']} | failed: {r['error'][:60]} | | | | |")
            continue
        lines.append(f"| {r['case']} | {r['frames']} | {r['seconds']:.2f} | {ratio(r, 'seconds')} | "
                     f"{r['cuda_peak_over_held'] / MiB:,.0f} | "
                     f"{ratio(r, 'cuda_peak_over_held')} | {r['peak_rss'] / MiB:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, nargs="+", default=[81, 161])
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_decode.json")
    args = p.parse_args(argv)
    if args.case:  # child: one measurement, printed as JSON
        with tempfile.TemporaryDirectory() as tmp:
            row = run_case(args.case, args.frames[0], args.height, args.width, args.dtype,
                           Path(tmp) / "out.mp4", args.device)
        print(json.dumps(row))
        return row
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_decode: needs a CUDA device; skipped", file=sys.stderr)
        return None
    rows = []
    for frames in args.frames:
        for case in args.cases:
            common = ["--frames", str(frames), "--height", str(args.height), "--width",
                      str(args.width), "--dtype", args.dtype]
            try:
                row = run_child("benchmarks.bench_gpu_decode", ["--case", case, *common])
            except RuntimeError as e:  # an out-of-memory baseline is a result, not a crash
                row = {"case": case, "frames": frames, "error": str(e).strip().splitlines()[-1]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "height": args.height, "width": args.width, "dtype": args.dtype, "rows": rows}
    print(table(rows))
    save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
