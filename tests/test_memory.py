"""Host memory does not grow with clip length (peak RSS from VmHWM, each render in a fresh process).

A render of 4x the frames must raise the child's peak RSS by less than 10%. The peak is set by a
decode transient (conv workspaces) whose size varies by a few percent from run to run with the
allocator's luck, so each length is measured twice and the lower peak is kept. That decoded
chunks are not accumulated is also checked deterministically (weak references) in
``test_no_dropped_chunk_alive_while_the_next_decodes``.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHILD = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(2)
    import vidmem
    frames, out = int(sys.argv[1]), sys.argv[2]
    pipe = vidmem.tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    report = vidmem.render(pipe, out, fps=16, chunk_frames=8, prompt="memory", num_frames=frames,
                           height=128, width=192, num_inference_steps=1,
                           generator=torch.Generator().manual_seed(0))
    print(json.dumps({"frames": report.frames, "peak": vidmem.utils.peak_rss_bytes()}))
""")


def _render_peak(frames: int, out) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(frames), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two renders in fresh processes at two clip lengths: minutes
def test_peak_rss_flat_in_clip_length(tmp_path):
    short = min((_render_peak(17, tmp_path / f"short{i}.mp4") for i in range(2)),
                key=lambda r: r["peak"])
    long = min((_render_peak(65, tmp_path / f"long{i}.mp4") for i in range(2)),
               key=lambda r: r["peak"])
    assert (short["frames"], long["frames"]) == (17, 65)
    assert long["peak"] - short["peak"] < 0.10 * short["peak"], (short, long)


@pytest.mark.parametrize("entry", ["decode_latents", "decode_with_fallback"])
def test_no_dropped_chunk_alive_while_the_next_decodes(entry):
    """Once the consumer drops a chunk and asks for the next, nothing in the stream holds it:
    checked *while* the next chunk decodes (a hook on the decoder), where a chunk kept by a
    generator's loop variable would sit on top of the decode's peak (it did: +14-18 MiB on the
    realistic Wan config, the previous uint8 chunk held by two generators)."""
    import gc
    import weakref

    import torch

    import vidmem
    from vidmem.decode.fallback import decode_with_fallback
    from vidmem.tiny import tiny_wan_vae

    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    refs: list = []
    alive_during_decode: list[int] = []

    def check(_module, _args):
        gc.collect()
        alive_during_decode.append(sum(r() is not None for r in refs))

    handle = vae.decoder.register_forward_pre_hook(check)
    options = dict(chunk_frames=4, tile_size=32, tile_overlap=16)
    stream = (vidmem.decode_latents(vae, z, **options) if entry == "decode_latents"
              else decode_with_fallback(vae, z, **options))
    try:
        for chunk in stream:
            # a view's base owns the frames: watch that (fallback hands out views)
            refs.append(weakref.ref(chunk if chunk._base is None else chunk._base))
            del chunk
    finally:
        handle.remove()
    assert len(refs) == 9
    assert len(alive_during_decode) > len(refs)
    assert max(alive_during_decode) == 0, alive_during_decode


def test_memory_work_leaves_frames_bit_identical(tmp_path, monkeypatch):
    """The host-memory work (slow_conv3d calls split into pieces, the in-place uint8
    conversion, Wan's preallocated chunk buffer, malloc tuning) changes no bit: the float
    stream equals ``vae.decode`` exactly, and the lossless MP4's frames equal those of a decode
    with the splitting switched off."""
    import torch

    import vidmem
    from vidmem.decode import conv_workspace
    from vidmem.tiny import tiny_wan_vae
    from video_utils import read_video

    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 3, 16, 24, generator=torch.Generator().manual_seed(0))  # 128x192
    splits = []
    original = conv_workspace.split_conv3d

    def counting(*args, **kwargs):
        splits.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_workspace, "split_conv3d", counting)
    monkeypatch.setenv("VIDMEM_CONV_WORKSPACE", "256KiB")  # force pieces at every aligned call
    with torch.no_grad():
        ref = vae.decode(z).sample
    pt = torch.cat(list(vidmem.decode_latents(vae, z, chunk_frames=4, output_type="pt")), 2)
    assert splits and torch.equal(pt, ref)
    vidmem.decode_to_video(vae, z, tmp_path / "on.mp4", chunk_frames=4, lossless=True)
    monkeypatch.setenv("VIDMEM_CONV_WORKSPACE", "0")
    before = len(splits)
    vidmem.decode_to_video(vae, z, tmp_path / "off.mp4", chunk_frames=4, lossless=True)
    assert len(splits) == before  # switched off: torch's own slow_conv3d
    on, _ = read_video(tmp_path / "on.mp4")
    off, _ = read_video(tmp_path / "off.mp4")
    assert on.shape == (9, 128, 192, 3) and np.array_equal(on, off)


def test_report_breaks_the_decode_peak_down(tmp_path):
    """``memory_breakdown=True`` puts the four terms in the report (and its JSON); they add up to
    the decode's peak RSS; the CLI's render and decode accept ``--memory-breakdown``."""
    import torch

    import vidmem
    from vidmem.cli import build_parser
    from vidmem.tiny import tiny_wan_vae

    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 2, 16, 24, generator=torch.Generator().manual_seed(0))
    report = vidmem.decode_to_video(vae, z, tmp_path / "b.mp4", chunk_frames=4,
                                    memory_breakdown=True)
    m = report.memory
    assert report.frames == 5 and m is not None and report.baseline_rss_bytes > 0
    # at this size the decode's peak lies between operators, all of it held by live tensors (the
    # largest workspace, a conv3d's, is below it): no workspace term
    assert m["live_tensors"] > 0 and m["kernel_workspaces"] == 0
    assert m["live_tensors"] == m["live_tensor_peak"] and 0 < m["largest_workspace"]
    assert (m["baseline_rss"] + m["live_tensors"] + m["kernel_workspaces"]
            + m["allocator_overhead"]) == m["peak_rss"]
    assert m["over_baseline"] == m["peak_rss"] - m["baseline_rss"]
    assert report.peak_rss_bytes >= m["peak_rss"]
    assert json.loads(report.to_json())["memory"]["largest_workspace_op"] == m[
        "largest_workspace_op"]
    assert "kernel workspaces" in str(report)
    plain = vidmem.decode_to_video(vae, z, tmp_path / "p.mp4", chunk_frames=4)
    assert plain.memory is None and plain.baseline_rss_bytes > 0
    parser = build_parser()
    assert parser.parse_args(["render", "--out", "x.mp4", "--memory-breakdown"]).memory_breakdown
    assert parser.parse_args(["decode", "c.safetensors", "--out", "x.mp4",
                              "--memory-breakdown"]).memory_breakdown
