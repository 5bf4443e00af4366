"""Never mix two clips, never replace a file unasked: the output claim (one run per output), the
destination checked before denoising, and existing videos, kept latents and stale partials.

Renders are the tiny Wan pipeline at 64x96, a few frames, so each takes seconds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import vidmem
from render_helpers import cli, fail_second_write, seeded
from vidmem.errors import OutputExists, OutputInUse
from vidmem.files import ClipFiles
from vidmem.outputs import OutputClaim
from video_utils import read_video


# --- two runs, one output -------------------------------------------------------------------------
HOLDER = """
import sys, time
from vidmem.outputs import OutputClaim
claim = OutputClaim(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_render_to_the_same_output_fails_fast_naming_the_first(tmp_path):
    out = tmp_path / "clip.mp4"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = cli("render", "--out", out, "--num-frames", "5")
        assert proc.returncode == 2
        assert f"pid {holder.pid}" in proc.stderr and "being written by another vidmem run" \
            in proc.stderr
        assert "stage: denoise" not in proc.stderr and len(proc.stderr.splitlines()) == 1
        # it touched nothing of the running one's files
        assert not out.exists() and not ClipFiles(out).latents.exists()
        assert not ClipFiles(out).partials()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    proc = cli("render", "--out", out, "--num-frames", "5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert len(read_video(out)[0]) == 5
    assert not ClipFiles(out).lock.exists()  # released and removed at the end


def test_another_thread_cannot_claim_a_claimed_output(tiny_pipe, tmp_path, spy_denoise):
    import threading

    out = tmp_path / "clip.mp4"
    errors = []
    with OutputClaim(out):
        worker = threading.Thread(target=lambda: errors.append(
            pytest.raises(OutputInUse, vidmem.render, tiny_pipe, out, **seeded())))
        worker.start()
        worker.join()
    assert errors and "another thread" in str(errors[0].value)
    assert spy_denoise == []


# --- destination checked before denoising ---------------------------------------------------------
def test_unwritable_directory_is_refused_before_denoising(tiny_pipe, tmp_path, monkeypatch,
                                                          spy_denoise):
    import tempfile

    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError, match="cannot write in .*choose a writable directory"):
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", **seeded())
    assert spy_denoise == []


def test_full_directory_is_refused_before_denoising(tiny_pipe, tmp_path, monkeypatch,
                                                    spy_denoise):
    import shutil

    from vidmem import outputs

    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 4096))
    with pytest.raises(OSError, match="only 4.00 KiB free .*latent checkpoint needs .* and the first chunk of video"):
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", **seeded())
    assert spy_denoise == []


# --- nothing replaced unasked ---------------------------------------------------------------------
def test_kept_latents_are_never_silently_overwritten(tiny_pipe, tmp_path, monkeypatch,
                                                     spy_denoise):
    out = tmp_path / "clip.mp4"
    fail_second_write(monkeypatch)
    with pytest.raises(vidmem.DecodeFailed):
        vidmem.render(tiny_pipe, out, chunk_frames=4, **seeded())
    monkeypatch.undo()
    ckpt = ClipFiles(out).latents
    before = ckpt.read_bytes()
    spy_denoise.clear()
    with pytest.raises(OutputExists, match=r"kept its latents at .*vidmem decode .*pass "
                                           r"overwrite=True") as refused:
        vidmem.render(tiny_pipe, out, **seeded())
    assert "pass --overwrite" not in str(refused.value)  # the API's words to an API caller
    assert spy_denoise == [] and ckpt.read_bytes() == before
    proc = cli("render", "--out", out, "--num-frames", "5")
    assert proc.returncode == 2 and "vidmem decode" in proc.stderr and str(ckpt) in proc.stderr
    assert ckpt.read_bytes() == before
    report = vidmem.render(tiny_pipe, out, overwrite=True, **seeded())
    assert report.frames == 9 and not ckpt.exists()


def test_an_existing_video_needs_overwrite(tmp_path):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"an earlier video")
    first = out.read_bytes()
    proc = cli("render", "--out", out, "--num-frames", "9", "--quiet")
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert "pass --overwrite" in proc.stderr and "overwrite=True" not in proc.stderr  # CLI words
    assert out.read_bytes() == first
    proc = cli("render", "--out", out, "--num-frames", "9", "--quiet", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert len(read_video(out)[0]) == 9


def test_a_stale_partial_is_reported_then_replaced_only_when_asked(tiny_pipe, tmp_path):
    out = tmp_path / "clip.mp4"
    writer = vidmem.VideoWriter(out, 16)
    writer.write(np.zeros((4, 64, 96, 3), np.uint8))
    while writer.frames_written < 4:  # the chunk is on disk
        time.sleep(0.01)
    writer.__exit__(RuntimeError, RuntimeError("crash"), None)  # keeps the partial stream
    partial = writer.partial_path
    assert partial.exists()
    with pytest.raises(OutputExists, match=r"partial stream .*\(4 frames play\)"):
        vidmem.render(tiny_pipe, out, **seeded())
    report = vidmem.render(tiny_pipe, out, overwrite=True, **seeded())
    assert any("replaced the partial stream" in n and "(4 frames)" in n for n in report.notes)
    assert not partial.exists() and len(read_video(out)[0]) == 9
