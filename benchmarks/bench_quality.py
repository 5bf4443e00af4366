"""Decode quality per VAE family: vidmem's chunked / tiled / windowed decode and diffusers' own
tiling, each against the full decode of the same latents (PSNR and max abs error), in one run.

Tiny configs with random weights (the tiny pipelines' VAEs, plus HunyuanVideo 1.5 and LTX-2),
one fixed set of latents per family. "Equal geometry" means the same tile edge and overlap in
pixels (diffusers: ``tile_sample_min = tile``, ``tile_sample_stride = tile - overlap``) and, for
temporal windows, the same stride. The full decode is one untiled decoder call over the clip.

    python -m benchmarks.bench_quality [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .common import save_json

RESULTS = Path(__file__).resolve().parent / "results"


def _families() -> dict[str, Callable[[], tuple[Any, Any, Callable, Callable | None]]]:
    """family -> builder returning (vae, latents, full_decode(z), diffusers_tiled(z, tile, ov))."""
    import torch

    import vidmem

    def gen(*shape):
        return torch.randn(*shape, generator=torch.Generator().manual_seed(1))

    def spatial_tiling(vae):
        import inspect

        params = inspect.signature(vae.enable_tiling).parameters

        def tiled(z, tile, overlap):
            if "tile_sample_stride_height" in params:
                geometry = dict(tile_sample_stride_height=tile - overlap,
                                tile_sample_stride_width=tile - overlap)
            else:  # CogVideoX: overlap as a fraction of the tile
                geometry = dict(tile_overlap_factor_height=overlap / tile,
                                tile_overlap_factor_width=overlap / tile)
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile, **geometry)
            try:
                return vae.decode(z).sample
            finally:
                vae.disable_tiling()
        return tiled

    def wan():
        vae = vidmem.tiny_pipeline("wan").vae
        return vae, gen(1, 16, 3, 12, 12), lambda z: vae.decode(z).sample, spatial_tiling(vae)

    def cogvideox():
        vae = vidmem.tiny_pipeline("cogvideox").vae
        return vae, gen(1, 4, 3, 12, 12), lambda z: vae.decode(z).sample, spatial_tiling(vae)

    def mochi():
        vae = vidmem.tiny_pipeline("mochi").vae
        return vae, gen(1, 12, 2, 12, 12), lambda z: vae.decode(z).sample, spatial_tiling(vae)

    def hunyuanvideo():
        vae = vidmem.tiny_pipeline("hunyuanvideo").vae

        def full(z):
            return vae.decoder(vae.post_quant_conv(z))
        vae.use_framewise_decoding = False  # spatial tiling only: same geometry as ours
        return vae, gen(1, 4, 3, 12, 12), full, spatial_tiling(vae)

    def ltx():
        vae = vidmem.tiny_pipeline("ltx").vae
        temb = torch.tensor([0.05])

        def full(z):
            torch.manual_seed(0)
            return vae.decoder(z, temb)
        vae.use_framewise_decoding = False
        tiling = spatial_tiling(vae)

        def tiled(z, tile, overlap):
            torch.manual_seed(0)
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_sample_stride_height=tile - overlap,
                              tile_sample_stride_width=tile - overlap)
            try:
                return vae.decode(z, temb).sample
            finally:
                vae.disable_tiling()
        del tiling
        return vae, gen(1, 8, 3, 6, 6), full, tiled

    def hunyuanvideo15():
        from diffusers import AutoencoderKLHunyuanVideo15

        torch.manual_seed(0)
        vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8,) * 5,
                                          layers_per_block=1).eval()

        def tiled(z, tile, overlap):
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_latent_min_height=tile // 16, tile_latent_min_width=tile // 16,
                              tile_overlap_factor=overlap / tile)
            vae.tile_sample_min_num_frames = 10**6
            try:
                return vae.decode(z).sample
            finally:
                vae.disable_tiling()
        return vae, gen(1, 4, 3, 6, 6), lambda z: vae.decoder(z), tiled

    def svd():
        vae = vidmem.tiny_pipeline("svd").vae
        return vae, gen(16, 4, 8, 8), lambda z: vae.decode(z, num_frames=16).sample, None

    def animatediff():
        vae = vidmem.tiny_pipeline("animatediff").vae

        def tiled(z, tile, overlap):
            vae.enable_tiling()
            vae.tile_sample_min_size, vae.tile_latent_min_size = tile, tile // 2
            vae.tile_overlap_factor = overlap / tile
            try:
                return vae.decode(z).sample
            finally:
                vae.disable_tiling()
        return vae, gen(8, 4, 32, 32), lambda z: vae.decode(z).sample, tiled

    return {"wan": wan, "cogvideox": cogvideox, "mochi": mochi, "hunyuanvideo": hunyuanvideo,
            "hunyuanvideo15": hunyuanvideo15, "ltx": ltx, "svd": svd, "animatediff": animatediff}


def measure(family: str) -> dict:
    import torch

    import vidmem
    from vidmem.metrics import max_abs_error, psnr

    vae, z, full, diffusers_tiled = _families()[family]()
    plan = vidmem.plan_decode(vae, z, tile_size=0)
    decode_kwargs = {"temb": torch.tensor([0.05])} if family == "ltx" else None
    if family == "svd":
        decode_kwargs = {"num_frames": z.shape[0]}
    axis = 0 if family in ("svd", "animatediff") else 2

    def stream(**kw):
        if family == "ltx":
            torch.manual_seed(0)
        return torch.cat(list(vidmem.decode_latents(vae, z, output_type="pt",
                                                    decode_kwargs=decode_kwargs, **kw)), axis)

    row: dict[str, Any] = {"family": family, "mode": plan.streaming}
    with torch.no_grad():
        ref = full(z).float()
        sf = vidmem.plan_decode(vae, z, decode_kwargs=decode_kwargs).height // z.shape[-2]
        # two tiles across: tile of w/2 + 1 latent px (at least 4), a quarter of it overlapping
        tile_latent = max(4, z.shape[-1] // 2 + 1)
        tile, overlap = tile_latent * sf, max(1, tile_latent // 4) * sf
        t0 = time.perf_counter()
        chunk = 8 if family not in ("svd", "animatediff") else 4
        chunked = stream(chunk_frames=chunk, tile_size=0)
        row["chunked_psnr"] = psnr(chunked, ref)
        row["chunked_max_abs"] = max_abs_error(chunked, ref)
        if diffusers_tiled is not None:
            # windowed families: one window, so only the spatial tiling differs from diffusers'
            spatial_chunk = chunk if plan.streaming == "cache" else 10**6
            tiled = stream(chunk_frames=spatial_chunk, tile_size=tile, tile_overlap=overlap)
            row["tile_px"], row["overlap_px"] = tile, overlap
            row["vidmem_tiled_psnr"] = psnr(tiled, ref)
            row["vidmem_tiled_max_abs"] = max_abs_error(tiled, ref)
            if diffusers_tiled is not None:
                theirs = diffusers_tiled(z, tile, overlap).float()
                row["diffusers_tiled_psnr"] = psnr(theirs, ref)
                row["diffusers_tiled_max_abs"] = max_abs_error(theirs, ref)
        if family == "svd":  # SVD's own decode_chunk_size: independent chunks, no overlap
            theirs = torch.cat([vae.decode(z[i:i + 4], num_frames=4).sample
                                for i in range(0, z.shape[0], 4)]).float()
            row["diffusers_chunked_psnr"] = psnr(theirs, ref)
        row["seconds"] = time.perf_counter() - t0
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="(same sizes; kept for the runner)")
    p.add_argument("--families", nargs="+", default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    rows = []
    for family in args.families or list(_families()):
        t0 = time.perf_counter()
        rows.append(measure(family))
        print(f"{family}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    def fmt(x):
        return "" if x is None else ("inf" if x == float("inf") else f"{x:.2f}")

    print("| family | streaming | chunked vs full (PSNR dB / max abs) | vidmem tiled PSNR | "
          "diffusers tiled PSNR | tile/overlap px |")
    print("|---|---|---|---:|---:|---|")
    for r in rows:
        diff = r.get("diffusers_tiled_psnr", r.get("diffusers_chunked_psnr"))
        note = " (SVD chunks)" if "diffusers_chunked_psnr" in r else ""
        print(f"| {r['family']} | {r['mode']} | {fmt(r['chunked_psnr'])} / "
              f"{r['chunked_max_abs']:.1e} | {fmt(r.get('vidmem_tiled_psnr'))} | "
              f"{fmt(diff)}{note} | "
              f"{r.get('tile_px', '')}/{r.get('overlap_px', '')} |")
    result = {"rows": rows}
    save_json(args.out, result)
    print(json.dumps({"families": len(rows)}), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
