"""Host memory does not grow with clip length (peak RSS from VmHWM, each render in a fresh process).

A render of 4x the frames must raise the child's peak RSS by less than 10%. The peak is set by a
decode transient (conv workspaces) whose size varies by a few percent from run to run with the
allocator's luck, so each length is measured twice and the lower peak is kept. That decoded
chunks are not accumulated is also checked deterministically (weak references) in
``test_one_chunk_alive``.
"""

import json
import subprocess
import sys
import textwrap

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
    print(json.dumps({"frames": report.frames, "peak": vidmem.peak_rss_bytes()}))
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


def test_one_chunk_alive():
    """Once the consumer drops a chunk and asks for the next, the stream holds no reference to
    it: at most the chunk just handed out is alive, never the earlier ones."""
    import gc
    import weakref

    import torch

    import vidmem
    from vidmem.tiny import tiny_wan_vae

    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    refs = []
    for chunk in vidmem.decode_latents(vae, z, chunk_frames=4, tile_size=32, tile_overlap=16):
        refs.append(weakref.ref(chunk))
        del chunk
        gc.collect()
        assert sum(r() is not None for r in refs[:-1]) == 0
    assert len(refs) == 9
