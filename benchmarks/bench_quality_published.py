"""Decode quality on the *published* VAE configurations: vidmem vs diffusers, per family.

Every family's VAE is built from its published ``config.json`` (:mod:`.published_configs`;
random weights from a fixed seed, small latents, the architecture unreduced) and one fixed set of
latents is decoded in each of these ways, each compared with the full decode (one untiled decoder
call over the whole clip):

* ``chunks``: vidmem's temporal chunks alone (its defaults for the family: carried causal state,
  whole-clip GroupNorm statistics for HunyuanVideo, cross-faded windows otherwise);
* ``tiles`` / ``tiles2``: vidmem's spatial tiles alone, at two tile geometries;
* ``both``: chunks and tiles (first geometry) together;
* ``diffusers_spatial`` / ``diffusers_spatial2``: ``vae.enable_tiling()`` at the same tile edge and
  overlap (``tile_sample_min = tile``, ``tile_sample_stride = tile - overlap``);
* ``diffusers_temporal``: diffusers' own temporal tiling where it has one (HunyuanVideo and LTX
  ``use_framewise_decoding``, Mochi's framewise decode, SVD's ``decode_chunk_size``), with
  vidmem's chunks at the same stride (``chunks``) and, for windowed decoders, at the same window
  length (``windows_equal``);
* for HunyuanVideo also ``windows``: cross-faded windows with per-window statistics
  (``whole_clip_norm=False``), vidmem's previous default, at its default context (alone and with
  tiles: ``windows_tiles``), and ``chunks_exact`` (``whole_clip_norm="exact"``).

diffusers' temporal tiling runs at its default geometry, except for HunyuanVideo, whose default
16-frame tiles would cover these short latents in one window: there 12-frame tiles with a stride
of 8 (4-latent windows stepping by 2).

Per row: PSNR (dB) and max abs error against the full decode, wall time, and for temporal modes
the seam ratio (:func:`vidmem.metrics.seam_ratio`: the frame-to-frame change across window
boundaries over the change inside windows) next to the full decode's ratio at the same frames.

    python -m benchmarks.bench_quality_published [--quick] [--families wan21 hunyuanvideo ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .common import save_json

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Case:
    """How one family is measured: latents, chunk size, tile geometries (latent px), and how
    diffusers decodes it in full, with spatial tiles and with temporal tiles."""

    key: str
    latent_shape: tuple[int, ...]
    chunk_frames: int
    #: (tile, overlap) in latent pixels, two geometries.
    tiles: tuple[tuple[int, int], tuple[int, int]]
    kind: str  # wan | cogvideox | hunyuanvideo | hunyuanvideo15 | ltx | mochi | svd | image
    #: diffusers' temporal tiling geometry ``(tile_sample_min_num_frames,
    #: tile_sample_stride_num_frames)`` where its default would not split these short latents
    #: (``None``: the VAE's default).
    temporal_px: tuple[int, int] | None = None


CASES: dict[str, Case] = {c.key: c for c in [
    # the windowed families first: they are the point of this benchmark
    Case("hunyuanvideo", (1, 16, 5, 4, 8), 8, ((4, 1), (6, 2)), "hunyuanvideo", (12, 8)),
    Case("ltx090", (1, 128, 4, 4, 4), 8, ((2, 1), (3, 1)), "ltx"),
    Case("ltx091", (1, 128, 4, 4, 4), 8, ((2, 1), (3, 1)), "ltx"),
    Case("ltx095", (1, 128, 4, 4, 4), 8, ((2, 1), (3, 1)), "ltx"),
    Case("ltx2", (1, 128, 4, 4, 4), 8, ((2, 1), (3, 1)), "ltx"),
    Case("wan21", (1, 16, 3, 6, 8), 4, ((4, 1), (6, 2)), "wan"),
    Case("wan22", (1, 48, 3, 4, 6), 4, ((4, 1), (4, 2)), "wan"),
    Case("cogvideox", (1, 16, 3, 6, 8), 4, ((4, 1), (6, 2)), "cogvideox"),
    Case("hunyuanvideo15", (1, 32, 3, 4, 6), 4, ((4, 1), (4, 2)), "hunyuanvideo15"),
    Case("mochi", (1, 12, 3, 6, 8), 6, ((4, 1), (6, 2)), "mochi"),
    Case("svd", (8, 4, 6, 8), 4, ((4, 1), (6, 2)), "svd"),
    Case("sdvae", (6, 4, 6, 8), 3, ((4, 1), (6, 2)), "image"),
]}

#: ``--quick``: the headline family and one image VAE, at the smallest sizes that still tile and
#: chunk, and fewer modes (the test suite runs this so the benchmark never rots).
QUICK: dict[str, Case] = {
    "hunyuanvideo": Case("hunyuanvideo", (1, 16, 2, 4, 6), 4, ((4, 1), (4, 2)), "hunyuanvideo"),
    "sdvae": Case("sdvae", (2, 4, 4, 6), 1, ((4, 1), (4, 2)), "image"),
}


def _latents(shape: tuple[int, ...]) -> Any:
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


class Diffusers:
    """diffusers' own decodes of one family's VAE: full, spatially tiled, temporally tiled."""

    def __init__(self, kind: str, vae: Any, decode_kwargs: dict[str, Any]):
        self.kind, self.vae, self.kw = kind, vae, decode_kwargs

    def _seeded(self, fn: Callable[[], Any]) -> Any:
        import torch

        torch.manual_seed(0)  # LTX decoders that inject noise draw it from the global RNG
        with torch.no_grad():
            return fn().float()

    def full(self, z: Any) -> Any:
        vae, kind = self.vae, self.kind
        if kind == "hunyuanvideo":
            return self._seeded(lambda: vae.decoder(vae.post_quant_conv(z)))
        if kind == "hunyuanvideo15":
            return self._seeded(lambda: vae.decoder(z))
        if kind == "ltx":
            return self._seeded(lambda: vae.decoder(z, self.kw.get("temb")))
        if kind == "svd":
            return self._seeded(lambda: vae.decode(z, num_frames=z.shape[0]).sample)
        return self._seeded(lambda: vae.decode(z).sample)

    def spatial(self, z: Any, tile: int, overlap: int) -> Any | None:
        vae, kind = self.vae, self.kind
        if kind == "svd":
            return None  # AutoencoderKLTemporalDecoder has no tiling
        if kind == "cogvideox":
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_overlap_factor_height=overlap / tile,
                              tile_overlap_factor_width=overlap / tile)
        elif kind == "hunyuanvideo15":
            sf = vae.spatial_compression_ratio
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_latent_min_height=tile // sf, tile_latent_min_width=tile // sf,
                              tile_overlap_factor=overlap / tile)
        elif kind == "image":
            vae.enable_tiling()
            vae.tile_sample_min_size, vae.tile_latent_min_size = tile, tile // 8
            vae.tile_overlap_factor = overlap / tile
        else:
            vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_sample_stride_height=tile - overlap,
                              tile_sample_stride_width=tile - overlap)
        if hasattr(vae, "use_framewise_decoding"):
            vae.use_framewise_decoding = False
        try:
            if kind == "ltx":
                return self._seeded(lambda: vae.decode(z, self.kw.get("temb")).sample)
            return self._seeded(lambda: vae.decode(z).sample)
        finally:
            vae.disable_tiling()

    def temporal(self, z: Any, factor: int, geometry_px: tuple[int, int] | None = None
                 ) -> tuple[Any, list[int], dict[str, int]] | None:
        """diffusers' temporal tiling at its default geometry (or ``geometry_px``: tile and stride
        in frames): (video, the first frame of each later window's region, its geometry in latent
        frames: window, stride)."""
        vae, kind = self.vae, self.kind
        if kind in ("hunyuanvideo", "ltx"):
            if geometry_px is not None:
                vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = geometry_px
            vae.use_framewise_decoding = True
            vae.use_tiling = False
            window = vae.tile_sample_min_num_frames // factor + 1
            stride = vae.tile_sample_stride_num_frames // factor
            blend = vae.tile_sample_min_num_frames - vae.tile_sample_stride_num_frames
            try:
                if kind == "ltx":
                    out = self._seeded(lambda: vae.decode(z, self.kw.get("temb")).sample)
                else:
                    out = self._seeded(lambda: vae.decode(z).sample)
            finally:
                vae.use_framewise_decoding = False
            starts = [stride * factor * i + 1 for i in range(1, math.ceil(z.shape[2] / stride))]
            bounds = [s + j for s in starts for j in range(blend + 1)]
            return out, bounds, {"window_latents": window, "stride_latents": stride}
        if kind == "mochi":
            saved = {m: m.pad_mode for m in vae.modules() if hasattr(m, "pad_mode")}
            vae._enable_framewise_decoding()
            try:
                out = self._seeded(lambda: vae.decode(z).sample)
            finally:
                vae.use_framewise_decoding = False
                for m, mode in saved.items():
                    m.pad_mode = mode
            step = vae.num_latent_frames_batch_size
            bounds = [factor * b - (factor - 1) for b in range(step, z.shape[2], step)]
            return out, bounds, {"window_latents": step, "stride_latents": step}
        if kind == "svd":
            import torch

            chunk = 4  # decode_chunk_size
            out = self._seeded(lambda: torch.cat([vae.decode(z[i:i + chunk], num_frames=len(
                z[i:i + chunk])).sample for i in range(0, z.shape[0], chunk)]))
            return out, list(range(chunk, z.shape[0], chunk)), {"window_latents": chunk,
                                                                 "stride_latents": chunk}
        return None


def _boundaries(plan: Any) -> list[int]:
    """Frames where a later chunk's output takes over (through its cross-fade)."""
    out = []
    for w in plan.windows[1:]:
        out.extend(range(w.keep_from - plan.blend_frames, w.keep_from + 1))
    return out


def measure(case: Case, extended: bool = True, spatial: bool = True, temporal: bool = True
            ) -> dict:
    """One family's rows. Without ``extended`` (``--quick``): chunks, tiles, both and diffusers'
    spatial tiling at the first geometry only. Without ``spatial``: the temporal rows only.
    Without ``temporal``: the spatial rows only (tiles and diffusers' tiling at both geometries,
    and chunks + tiles)."""
    import torch

    import vidmem
    from vidmem.decode.families import adapter_for
    from vidmem.metrics import max_abs_error, psnr, seam_ratio

    from .published_configs import PUBLISHED

    spec = PUBLISHED[case.key]
    t0 = time.perf_counter()
    vae = spec.build()
    build_s = time.perf_counter() - t0
    z = _latents(case.latent_shape)
    kw = dict(spec.decode_kwargs)
    if "temb" in kw:
        kw["temb"] = torch.tensor([float(kw["temb"])])
    if "num_frames" in kw:
        kw["num_frames"] = z.shape[0]
    adapter = adapter_for(vae, kw)
    axis = adapter.native_time_axis if case.kind != "image" else 0
    factor, sf = adapter.time_map.factor, adapter.spatial_factor
    ref_api = Diffusers(case.kind, vae, kw)

    t0 = time.perf_counter()
    ref = ref_api.full(z)
    rows: dict[str, dict] = {"full": {"seconds": time.perf_counter() - t0}}

    def score(name: str, out: Any, seconds: float, bounds: list[int] | None = None, **extra: Any
              ) -> None:
        row = {"psnr": psnr(out, ref), "max_abs": max_abs_error(out, ref), "seconds": seconds,
               **extra}
        if bounds:
            row["seam"] = seam_ratio(out, bounds, axis)
            row["seam_full"] = seam_ratio(ref, bounds, axis)
        rows[name] = row
        print(f"  {case.key} {name}: {row['psnr']:.2f} dB, {seconds:.1f} s", file=sys.stderr)

    def vidmem_decode(name: str, temporal: bool = True, **options: Any) -> None:
        options.setdefault("chunk_frames", case.chunk_frames if temporal else 10**6)
        options.setdefault("tile_size", 0)
        plan = vidmem.plan_decode(vae, z, decode_kwargs=kw, **options)
        for other in rows.values():  # the same plan was measured already (e.g. LTX's defaults
            if other.get("plan") == plan.summary():  # are diffusers' window geometry)
                rows[name] = dict(other)
                return
        torch.manual_seed(0)
        t = time.perf_counter()
        with torch.no_grad():
            out = torch.cat(list(vidmem.decode_latents(vae, z, output_type="pt", decode_kwargs=kw,
                                                       **options)), axis)
        score(name, out, time.perf_counter() - t, _boundaries(plan) if temporal else None,
              plan=plan.summary(), chunks=len(plan.windows), tiles=len(plan.tiles))

    if temporal:
        vidmem_decode("chunks")
    geometries = [(tile * sf, overlap * sf) for tile, overlap in case.tiles]
    for suffix, (tile, overlap) in zip(("", "2"), (geometries if extended else geometries[:1])
                                       if spatial else []):
        vidmem_decode(f"tiles{suffix}", temporal=False, tile_size=tile, tile_overlap=overlap)
        t = time.perf_counter()
        try:
            theirs = ref_api.spatial(z, tile, overlap)
        except RuntimeError as e:  # e.g. LTX-2's reflect padding on 2-latent tiles
            rows[f"diffusers_spatial{suffix}"] = {"error": str(e).splitlines()[0], "psnr": None,
                                                  "max_abs": None, "seconds": None,
                                                  "tile_px": tile, "overlap_px": overlap}
            print(f"  {case.key} diffusers_spatial{suffix}: fails ({e})", file=sys.stderr)
            continue
        if theirs is not None:
            score(f"diffusers_spatial{suffix}", theirs, time.perf_counter() - t,
                  tile_px=tile, overlap_px=overlap)
    if spatial:
        vidmem_decode("both", tile_size=geometries[0][0], tile_overlap=geometries[0][1])

    if not temporal:
        return _result(case, spec, ref, axis, adapter, build_s, rows)
    t = time.perf_counter()
    try:
        temporal = ref_api.temporal(z, factor, case.temporal_px) if extended else None
    except RuntimeError as e:  # e.g. Mochi's framewise decoding at some latent lengths
        rows["diffusers_temporal"] = {"error": str(e).splitlines()[0], "psnr": None,
                                      "max_abs": None, "seconds": None}
        print(f"  {case.key} diffusers_temporal: fails ({e})", file=sys.stderr)
        temporal = None
    if temporal is not None:
        theirs, bounds, geometry = temporal
        score("diffusers_temporal", theirs, time.perf_counter() - t, bounds, **geometry)
        context = geometry["window_latents"] - geometry["stride_latents"]
        if adapter.streaming == "window" or case.kind == "hunyuanvideo":
            # the same windows as diffusers: its stride of new latents, its context
            overlap = factor * (context - 1) + 1 if adapter.time_map.causal_first_frame \
                else factor * context
            vidmem_decode("windows_equal", chunk_frames=geometry["stride_latents"] * factor,
                          overlap_frames=overlap, whole_clip_norm=False
                          if case.kind == "hunyuanvideo" else None)
    if case.kind == "hunyuanvideo" and extended:
        vidmem_decode("windows", whole_clip_norm=False)
        vidmem_decode("windows_tiles", whole_clip_norm=False, tile_size=geometries[0][0],
                      tile_overlap=geometries[0][1])
        vidmem_decode("chunks_exact", whole_clip_norm="exact")
    return _result(case, spec, ref, axis, adapter, build_s, rows)


def _result(case: Case, spec: Any, ref: Any, axis: int, adapter: Any, build_s: float,
            rows: dict[str, dict]) -> dict:
    return {"family": case.key, "label": spec.label, "class": spec.cls, "source": spec.source,
            "latent_shape": list(case.latent_shape), "frames": int(ref.shape[axis]),
            "height": int(ref.shape[-2]), "width": int(ref.shape[-1]),
            "streaming": adapter.streaming, "build_seconds": build_s, "modes": rows}


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return "inf" if x == math.inf else f"{x:.{digits}f}"


def table(results: list[dict]) -> str:
    """The headline markdown tables: PSNR dB / max abs / seconds per mode, then the seams."""
    def cell(m: dict, name: str) -> str:
        if name not in m:
            return "n/a"
        r = m[name]
        if r.get("error"):
            return "fails"
        return f"{_fmt(r['psnr'])} / {_fmt(r['max_abs'], 3)} / {r['seconds']:.0f}"

    modes = [("chunks", "chunks"), ("tiles", "tiles"), ("diffusers_spatial", "diffusers tiles"),
             ("tiles2", "tiles (2nd)"), ("diffusers_spatial2", "diffusers tiles (2nd)"),
             ("both", "chunks + tiles"), ("diffusers_temporal", "diffusers temporal"),
             ("windows_equal", "vidmem windows at diffusers' geometry")]
    lines = ["| family | latents -> frames x H x W (full decode s) | "
             + " | ".join(label for _, label in modes) + " |",
             "|---|---|" + "---:|" * len(modes)]
    for r in results:
        m = r["modes"]
        lines.append(f"| {r['label']} | {'x'.join(map(str, r['latent_shape']))} -> "
                     f"{r['frames']}x{r['height']}x{r['width']} ({m['full']['seconds']:.0f} s) | "
                     + " | ".join(cell(m, name) for name, _ in modes) + " |")
    extra = [r for r in results if "windows" in r["modes"]]
    if extra:
        lines += ["", "| family | windows (own statistics, default context) | windows + tiles | "
                  "whole-clip statistics, exact |", "|---|---:|---:|---:|"]
        for r in extra:
            m = r["modes"]
            lines.append(f"| {r['label']} | {cell(m, 'windows')} | {cell(m, 'windows_tiles')} | "
                         f"{cell(m, 'chunks_exact')} |")
    lines += ["", "| family | tile geometries (px: tile/overlap) | vidmem tile plan | "
              "chunk plan |", "|---|---|---|---|"]
    for r in results:
        m = r["modes"]
        geo = ", ".join(f"{m[k]['tile_px']}/{m[k]['overlap_px']}" for k in
                        ("diffusers_spatial", "diffusers_spatial2") if k in m) or "n/a"
        tiles = m.get("tiles", {}).get("plan", "").split("; ")
        chunks = m.get("chunks", {}).get("plan", "").split("; ")
        lines.append(f"| {r['label']} | {geo} | {tiles[2] if len(tiles) > 2 else ''} | "
                     f"{chunks[1] if len(chunks) > 1 else ''} |")
    windowed = [r for r in results if any(not math.isnan(v.get("seam", math.nan))
                                          for v in r["modes"].values())]
    if windowed:
        lines += ["", "Seams: frame-to-frame change across window boundaries / inside windows "
                  "(``seam_ratio``), each next to the full decode's ratio at the same frames.", "",
                  "| family | vidmem chunks (full) | vidmem windows at diffusers' geometry (full) | "
                  "diffusers temporal (full) |", "|---|---|---|---|"]
        for r in windowed:
            m = r["modes"]

            def seam(name: str) -> str:
                if "seam" not in m.get(name, {}):
                    return "n/a"
                return f"{_fmt(m[name]['seam'])} ({_fmt(m[name]['seam_full'])})"
            lines.append(f"| {r['label']} | {seam('chunks')} | {seam('windows_equal')} | "
                         f"{seam('diffusers_temporal')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="HunyuanVideo and the SD VAE at tiny latents (the test suite runs this)")
    p.add_argument("--families", nargs="+", default=None, choices=sorted(CASES))
    p.add_argument("--temporal-only", action="store_true",
                   help="only the temporal rows (chunks, diffusers' temporal tiling, windows)")
    p.add_argument("--spatial-only", action="store_true",
                   help="only the spatial rows (tiles, diffusers' tiling, chunks + tiles)")
    p.add_argument("--out", type=Path, default=RESULTS / "quality_published.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    cases = QUICK if args.quick else CASES
    keys = args.families or list(cases)
    results = []
    for key in keys:
        t0 = time.perf_counter()
        results.append(measure(cases.get(key) or CASES[key], extended=not args.quick,
                               spatial=not args.temporal_only,
                               temporal=not args.spatial_only))
        print(f"{key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        save_json(args.out, {"rows": results, "partial": True})  # a long run keeps what it has
    print(table(results))
    result = {"rows": results}
    save_json(args.out, result)
    print(json.dumps({"families": len(results)}), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
