"""Functions run on each rank by ``dist_helpers.run_ranks`` (importable by spawned processes).

Each writes what it observed to ``out_dir/rank{N}.json``; the test reads and asserts.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CALL = dict(prompt="a lighthouse at dusk", num_frames=9, height=64, width=96,
            num_inference_steps=2)
CALL_NO_PROMPT = {k: v for k, v in CALL.items() if k != "prompt"}
TILING = dict(chunk_frames=4, tile_size=48, tile_overlap=16)


def _save(out_dir: str, rank: int, result: dict) -> None:
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


def split_decodes(rank: int, out_dir: str) -> None:
    """Split decodes (tiles for Wan, windows and tiles for a noise-injecting windowed LTX VAE)
    against the same decode in one process."""
    import vidmem
    from vidmem.parallel import DecodeSplit, SplitSession

    from family_vaes import tiny_ltx_vae

    session = SplitSession.resolve(None)
    result: dict = {}

    wan = vidmem.tiny_pipeline("wan", seed=0).vae
    z = torch.randn(1, 16, 5, 8, 12, generator=torch.Generator().manual_seed(0))
    opts = dict(TILING, output_type="pt")
    split = DecodeSplit(session)
    chunks = list(vidmem.decode_latents(wan, z, split=split, **opts))
    result["wan_mode"] = split.mode
    result["wan_items"] = split.items_done
    if rank == 0:
        ref = list(vidmem.decode_latents(wan, z, **opts))
        result["wan_equal"] = len(ref) == len(chunks) and all(
            torch.equal(a, b) for a, b in zip(ref, chunks))
        plan = vidmem.plan_decode(wan, z, **TILING)
        result["wan_pieces"] = len(plan.tiles) * len(plan.windows)
    else:
        result["wan_chunks"] = len(chunks)

    ltx = tiny_ltx_vae(causal=False, inject_noise=True)
    zl = torch.randn(1, 8, 7, 8, 12, generator=torch.Generator().manual_seed(2))
    lopts = dict(chunk_frames=8, tile_size=24, tile_overlap=8, output_type="pt")  # 4 x 6 tiles
    for by in ("windows", "tiles"):
        torch.manual_seed(5)  # the decoder draws noise from the global RNG: same state everywhere
        split = DecodeSplit(session, by=by)
        chunks = list(vidmem.decode_latents(ltx, zl, split=split, **lopts))
        result[f"ltx_{by}_mode"] = split.mode
        result[f"ltx_{by}_items"] = split.items_done
        if rank == 0:
            torch.manual_seed(5)
            ref = list(vidmem.decode_latents(ltx, zl, **lopts))
            result[f"ltx_{by}_equal"] = len(ref) == len(chunks) and all(
                torch.equal(a, b) for a, b in zip(ref, chunks))

    _save(out_dir, rank, result)


def failing_ranks(rank: int, out_dir: str) -> None:
    """Three split renders: a rank's decode raises; rank 0's writer raises; a rank runs out of
    memory once (every rank retries with the smaller plan, and the file equals a single
    process's)."""
    import vidmem
    from vidmem.decode.families.wan import WanAdapter
    from vidmem.parallel import RankFailed

    pipe = vidmem.tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    result: dict = {}
    original = WanAdapter.decode_piece

    def render(name: str, **kw):
        return vidmem.render(pipe, Path(out_dir, name), lossless=True,
                             generator=torch.Generator().manual_seed(0), **{**TILING, **CALL, **kw})

    # 1) rank 1 fails in its second tile.
    calls = []

    def failing_piece(self, z, state, first):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            raise RuntimeError("simulated decoder failure")
        return original(self, z, state, first)

    WanAdapter.decode_piece = failing_piece
    try:
        render("fail.mp4")
        result["fail"] = "no error"
    except vidmem.DecodeFailed as e:
        result["fail"] = f"DecodeFailed: {e}"
        result["fail_checkpoint"] = str(e.checkpoint)
    except RankFailed as e:
        result["fail"] = f"RankFailed: {e}"
        result["fail_ranks"] = e.ranks
    finally:
        WanAdapter.decode_piece = original

    # 2) rank 0's writer fails on the second chunk.
    write = vidmem.VideoWriter.write
    writes = []

    def failing_write(self, frames):
        writes.append(1)
        if len(writes) == 2:
            raise OSError("disk full (simulated)")
        return write(self, frames)

    vidmem.VideoWriter.write = failing_write
    try:
        render("writer.mp4", checkpoint=False)
        result["writer"] = "no error"
    except Exception as e:  # noqa: BLE001
        result["writer"] = f"{type(e).__name__}: {e}"
    finally:
        vidmem.VideoWriter.write = write

    # 3) rank 1 runs out of memory once: all ranks retry with half the chunk (2 -> 1 latent
    # frames; for Wan's carried cache that changes nothing in the output).
    ooms = []

    def oom_piece(self, z, state, first):
        if rank == 1 and not ooms:
            ooms.append(1)
            raise torch.OutOfMemoryError("simulated: out of memory")
        return original(self, z, state, first)

    WanAdapter.decode_piece = oom_piece
    try:
        report = render("oom.mp4", chunk_frames=8)
        result["oom_retries"] = report.retries
        result["oom_frames"] = report.frames
    finally:
        WanAdapter.decode_piece = original
    if rank == 0:
        render("single.mp4", process_group=False)
    _save(out_dir, rank, result)


def batch_ranks(rank: int, out_dir: str, prompts: str) -> None:
    """A batch over the world group through the Python API (each rank its own pipeline)."""
    import vidmem

    pipe = vidmem.tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    report = vidmem.render_batch(pipe, vidmem.parse_prompts(prompts), Path(out_dir, "clips"),
                                 fps=16, chunk_frames=4, lossless=True, **CALL_NO_PROMPT)
    _save(out_dir, rank, {"ranks": report.ranks, "failed": len(report.failed),
                          "clips": report.clips})
