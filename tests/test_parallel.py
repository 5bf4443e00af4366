"""One clip split over ranks (torch.distributed, gloo, 2 processes on CPU): the output equals the
single-process output bit for bit, and a failing rank stops every rank with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import dist_workers
import vidmem
from dist_helpers import TORCHRUN, run_ranks
from video_utils import read_video
from vidmem.parallel import Group, RankFailed
from vidmem.parallel.context import choose_degrees, unavailable_reason
from vidmem.parallel.exchange import choose_mode
from vidmem.parallel.session import already_agreed, describe_transport


def results(tmp_path, size=2):
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(size)]


def test_split_decode_equals_single_process(tmp_path):
    run_ranks(dist_workers.split_decodes, 2, str(tmp_path))
    r0, r1 = results(tmp_path)
    # Wan: a causal cache per tile; the 6 tiles of every chunk are shared 3 + 3.
    assert r0["wan_mode"] == "tiles" and r0["wan_equal"] is True
    assert r0["wan_items"] == r1["wan_items"] == r0["wan_pieces"] // 2
    assert r1["wan_chunks"] == 0  # only rank 0 gets frames
    # LTX (noise-injecting, windowed): split by windows or by tiles, both exact.
    assert r0["ltx_windows_mode"] == "windows" and r0["ltx_tiles_mode"] == "tiles"
    assert r0["ltx_windows_equal"] is True and r0["ltx_tiles_equal"] is True
    assert r1["ltx_windows_items"] == 2 and r1["ltx_tiles_items"] == 12  # 4 windows, 6 x 4 tiles


def test_split_render_cli_equals_single_process(tiny_pipe, tmp_path):
    """`torchrun -m vidmem render` (tiny Wan, 6 spatial tiles, lossless) = the same render in one
    process (the README runs the same comparison with two `vidmem render` commands)."""
    from vidmem.cli.cmd_render import DEFAULT_PROMPT

    args = ["--num-frames", "9", "--chunk-frames", "4", "--tile-size", "48", "--tile-overlap",
            "16", "--lossless"]
    split = subprocess.run([sys.executable, *TORCHRUN, "--nproc-per-node", "2", "-m", "vidmem",
                            "render", "--out", str(tmp_path / "split.mp4"), *args],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert split.returncode == 0, split.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each rank (two threads crawl on a loaded 2-core machine)
    try:
        torch.manual_seed(0)  # what `vidmem render --seed 0` does
        vidmem.render(tiny_pipe, tmp_path / "single.mp4", fps=16, chunk_frames=4, tile_size=48,
                      tile_overlap=16, lossless=True, prompt=DEFAULT_PROMPT, num_frames=9,
                      height=64, width=96, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0))
    finally:
        torch.set_num_threads(threads)
    a, rate = read_video(tmp_path / "split.mp4")
    b, _ = read_video(tmp_path / "single.mp4")
    assert a.shape == (9, 64, 96, 3) and rate == 16
    assert np.array_equal(a, b)
    assert split.stdout.count("wrote ") == 1  # rank 0 alone reports
    assert "split over 2 processes (gloo); context parallelism not used" in split.stderr
    assert not (tmp_path / "split.latents.safetensors").exists()


def test_failing_rank_stops_every_rank(tmp_path):
    run_ranks(dist_workers.failing_ranks, 2, str(tmp_path), timeout=300)
    r0, r1 = results(tmp_path)
    # 1) rank 1's decoder raised: rank 0 names it, keeps the latents, says how to resume.
    assert r0["fail"].startswith("DecodeFailed:")
    assert "rank 1 failed: RuntimeError: simulated decoder failure" in r0["fail"]
    assert "vidmem decode" in r0["fail"] and r0["fail_checkpoint"].endswith(
        "fail.latents.safetensors")
    assert (tmp_path / "fail.latents.safetensors").exists()
    assert not (tmp_path / "fail.mp4").exists()
    assert r1["fail"].startswith("RankFailed:") and r1["fail_ranks"] == [1]
    # 2) rank 0's writer failed: rank 1 stops too instead of waiting.
    # (rank 0 reports its own error as the write failure it is; the others name rank 0)
    assert r0["writer"].startswith("DecodeFailed: writing the video failed (OSError: disk full "
                                   "(simulated))")
    assert "checkpoint=False" in r0["writer"]
    assert r1["writer"].startswith("RankFailed:") and "disk full" in r1["writer"]
    assert not (tmp_path / "writer.mp4").exists()
    # 3) rank 1 ran out of memory: every rank retried with the same smaller plan.
    assert len(r0["oom_retries"]) == 1 and "out of memory" in r0["oom_retries"][0]
    assert len(r1["oom_retries"]) == 1
    assert r0["oom_frames"] == 9 and r1["oom_frames"] == 0
    oom, _ = read_video(tmp_path / "oom.mp4")
    single, _ = read_video(tmp_path / "single.mp4")
    assert np.array_equal(oom, single)


def test_split_mode_choice(tiny_pipe):
    from vidmem import plan_decode

    from family_vaes import tiny_ltx_vae

    plan = plan_decode(tiny_pipe.vae, torch.zeros(1, 16, 5, 8, 12), chunk_frames=4, tile_size=48,
                       tile_overlap=16)
    assert choose_mode(plan, "auto") == "tiles"
    with pytest.raises(ValueError, match="cannot be split; split by tiles"):
        choose_mode(plan, "windows")
    ltx = tiny_ltx_vae(causal=False)
    untiled = plan_decode(ltx, torch.zeros(1, 8, 4, 4, 6), chunk_frames=8)  # 1 tile, 2 windows
    assert choose_mode(untiled, "auto") == "windows"
    assert choose_mode(untiled, "tiles") == "tiles"
    tiled = plan_decode(ltx, torch.zeros(1, 8, 7, 8, 12), chunk_frames=8, tile_size=24,
                        tile_overlap=8)  # 6 tiles, 4 windows
    assert choose_mode(tiled, "auto", size=2) == "tiles"  # 3 + 3 tiles, as even as 2 + 2 windows
    assert choose_mode(tiled, "auto", size=4) == "windows"  # 2+2+1+1 tiles vs 1 window each


def test_context_parallel_degrees_and_availability(tiny_pipe):
    assert choose_degrees(4, heads=8) == (1, 4)  # Ulysses when the heads divide
    assert choose_degrees(4, heads=6) == (4, 1)  # else ring
    assert choose_degrees(8, heads=12, ring_degree=2) == (2, 4)
    with pytest.raises(ValueError, match="must divide the transformer's 6 attention heads"):
        choose_degrees(4, heads=6, ulysses_degree=4)
    with pytest.raises(ValueError, match="divisor of the number of processes"):
        choose_degrees(4, heads=8, ring_degree=3)
    # On CPU with gloo, diffusers' context parallelism is not available: the reason says so.
    gloo = Group(pg=None, rank=0, size=2, backend="gloo")
    reason = unavailable_reason(tiny_pipe, gloo)
    assert reason is not None and "NCCL" in reason
    assert getattr(tiny_pipe.transformer, "_parallel_config", None) is None  # left untouched


def test_already_agreed_follows_the_exception_chain():
    failed = RankFailed([(1, "RuntimeError: boom")])
    assert str(failed) == "rank 1 failed: RuntimeError: boom" and failed.ranks == [1]
    try:
        try:
            raise failed
        except RankFailed as e:
            raise ValueError("wrapped") from e
    except ValueError as e:
        assert already_agreed(e)
    assert not already_agreed(ValueError("local only"))


def test_transport_errors_are_described_in_one_short_line():
    gloo = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:2446: Connection reset by peer. This is typically caused by "
                        "a remote worker hanging or bugs in the application. GLHF!")
    assert describe_transport(gloo) == ("RuntimeError: Read error [127.0.0.1]:2446: Connection "
                                        "reset by peer")

