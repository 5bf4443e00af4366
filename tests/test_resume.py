"""Never lose the denoising: the latents kept when the decode or the write fails or is interrupted
(Ctrl-C, SIGINT), the resume command, and damaged or non-finite checkpoints refused.

Renders are the tiny Wan pipeline at 64x96, a few frames, so each takes seconds."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vidmem
from render_helpers import cli, fail_second_write, seeded
from vidmem import CheckpointDamaged
from vidmem.checkpoint import load_checkpoint
from vidmem.files import ClipFiles
from video_utils import read_video


# --- latents kept when the decode fails -----------------------------------------------------------
def test_checkpoint_that_cannot_be_saved_goes_to_the_temp_dir_and_the_decode_goes_on(
        tiny_pipe, tmp_path, monkeypatch):
    """The disk fills during the denoising: the latents go to the temp directory (said in a
    note) and the decode still runs; when that decode fails too, the kept temp checkpoint
    resumes to the same video."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def disk_full_here(tensors, filename, metadata=None):
        if Path(filename).parent == tmp_path:
            raise OSError(28, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_here)
    report = vidmem.render(tiny_pipe, tmp_path / "ok.mp4", lossless=True, **seeded())
    assert report.frames == 9 and any("saved them at" in n for n in report.notes)

    fail_second_write(monkeypatch)
    out = tmp_path / "clip.mp4"
    with pytest.raises(vidmem.DecodeFailed) as e:
        vidmem.render(tiny_pipe, out, lossless=True, chunk_frames=4, **seeded())
    ckpt = e.value.checkpoint
    assert ckpt is not None and ckpt.parent != tmp_path and ckpt.exists()
    assert str(ckpt) in str(e.value)
    monkeypatch.undo()
    try:
        vidmem.decode_to_video(tiny_pipe.vae, load_checkpoint(ckpt).decode_input.latents, out,
                               lossless=True, resume=True)
    finally:
        ckpt.unlink()
    assert np.array_equal(read_video(out)[0], read_video(tmp_path / "ok.mp4")[0])


def test_a_write_failure_is_reported_as_a_write_failure(tiny_pipe, tmp_path, monkeypatch):
    from vidmem.io import writer

    def broken(self, container, stream, chunk):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.VideoWriter, "_encode_chunk", broken)
    with pytest.raises(vidmem.DecodeFailed, match="writing the video failed") as e:
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", chunk_frames=4, **seeded())
    assert e.value.stage == "write" and e.value.checkpoint.exists()


# --- the resume command carries the options -------------------------------------------------------
def test_the_resume_command_carries_every_decode_and_writer_flag(tiny_pipe, tmp_path,
                                                                 monkeypatch):
    out = tmp_path / "clip.mp4"
    # chunk_frames=4 is one latent a chunk: the first chunk is latent 0's one frame, on disk
    # before the second write fails
    fail_second_write(monkeypatch, wait_written=1)
    with pytest.raises(vidmem.DecodeFailed) as e:
        vidmem.render(tiny_pipe, out, chunk_frames=4, tile_size=64, tile_overlap=32, fps=12.5,
                      lossless=True, **seeded(height=128, width=128))
    argv = shlex.split(e.value.resume)
    assert argv[:5] == ["vidmem", "decode", str(ClipFiles(out).latents), "--out", str(out)]
    flags = " ".join(argv[5:])
    for flag in ("--chunk-frames 4", "--tile-size 64", "--tile-overlap 32", "--fps 12.5",
                 "--lossless"):
        assert flag in flags
    assert e.value.stage == "write" and e.value.frames_played == 1


# --- corrupt latents ------------------------------------------------------------------------------
def test_a_damaged_checkpoint_is_refused(tiny_pipe, tmp_path, monkeypatch):
    out = tmp_path / "clip.mp4"
    vidmem.render(tiny_pipe, out, keep_latents=True, **seeded())
    ckpt = ClipFiles(out).latents
    load_checkpoint(ckpt)  # intact: loads
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the tensor data
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointDamaged, match="damaged"):
        load_checkpoint(ckpt)
    proc = cli("decode", ckpt, "--out", tmp_path / "again.mp4")
    assert proc.returncode == 2 and "is damaged" in proc.stderr
    assert not (tmp_path / "again.mp4").exists()


def test_non_finite_latents_are_refused(tiny_pipe, tmp_path):
    latents = torch.randn(1, 16, 3, 8, 12)
    latents[0, 0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/inf value"):
        next(vidmem.decode_latents(tiny_pipe.vae, latents))
    with pytest.raises(ValueError, match="NaN/inf"):
        vidmem.decode_to_video(tiny_pipe.vae, latents, tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []
    from vidmem.pipelines import DecodeInput

    ckpt = vidmem.save_checkpoint(tmp_path / "nan.latents.safetensors", DecodeInput(latents),
                                  model=None, family="wan", fps=16, frames=9)
    with pytest.raises(CheckpointDamaged, match="NaN/inf"):
        load_checkpoint(ckpt)


# --- interrupts -----------------------------------------------------------------------------------
def test_ctrl_c_during_the_decode_keeps_latents_and_says_how_to_resume(tiny_pipe, tmp_path):
    out = tmp_path / "clip.mp4"

    partial = out.with_name(out.name + ".partial.ts")

    def interrupt_after_first_chunk(stage, done, total):
        # Ctrl-C reaches the main thread, where the decode runs: raise there, once the first
        # chunk is on disk
        if stage == "decode" and done > 4:
            deadline = time.monotonic() + 60
            while not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.01)
            raise KeyboardInterrupt

    with pytest.raises(vidmem.DecodeInterrupted) as e:
        vidmem.render(tiny_pipe, out, chunk_frames=4, lossless=True,
                      progress=interrupt_after_first_chunk, **seeded())
    assert isinstance(e.value, KeyboardInterrupt)
    assert e.value.checkpoint == ClipFiles(out).latents and e.value.checkpoint.exists()
    assert e.value.frames_played > 0 and e.value.partial.exists()
    assert "resume with `vidmem decode" in str(e.value) and "plays" in str(e.value)


SLOW_DECODE = """
import sys, time
import vidmem.decode.stream as stream
original = stream._decode_window
def slow(*args, **kwargs):
    time.sleep(0.4)
    return original(*args, **kwargs)
stream._decode_window = slow
from vidmem.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_until_the_decode_writes(args: list[str], out: Path) -> subprocess.Popen:
    """The CLI with :data:`SLOW_DECODE`, returned once its partial stream has bytes on disk."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_DECODE, *args], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    partial = out.with_name(out.name + ".partial.ts")
    deadline = time.monotonic() + 240
    while not (partial.exists() and partial.stat().st_size > 0):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_sigint_during_the_decode_prints_the_resume_command_and_the_resume_is_exact(tmp_path):
    """A real SIGINT to the CLI mid-decode (each window slowed down so it lands there): exit
    130 with the kept latents, the partial stream's frames and the resume command on stderr;
    running that command gives the same file as an uninterrupted render."""
    out = tmp_path / "clip.mp4"
    args = ["render", "--out", str(out), "--num-frames", "17", "--chunk-frames", "4",
            "--lossless", "--tile-size", "0"]
    proc = start_until_the_decode_writes(args, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert "interrupted during the decode" in line and "latents are kept at" in line
    assert "plays" in line and "Traceback" not in stderr
    resume = line.split("resume with `")[1].rstrip("`")
    assert "--lossless" in resume and "--chunk-frames 4" in resume
    argv = shlex.split(resume)
    assert argv[0] == "vidmem"
    done = cli(*argv[1:], "--quiet")
    assert done.returncode == 0, done.stderr
    assert ClipFiles(out).latents.exists()  # `vidmem decode` keeps the latents it was given
    reference = tmp_path / "reference.mp4"
    ref = cli(*[a if a != str(out) else str(reference) for a in args], "--quiet")
    assert ref.returncode == 0, ref.stderr
    assert np.array_equal(read_video(out)[0], read_video(reference)[0])


@pytest.mark.slow
def test_sigkill_during_the_decode_then_the_advised_resume_equals_the_uninterrupted_render(
        tmp_path):
    """A hard kill (SIGKILL: nothing is printed, only the checkpoint and the partial stream are
    left) mid-decode of a tiled, chunked, lossless render; re-running the render refuses and
    advises a `vidmem decode` command without any flags; that command reproduces the
    uninterrupted render frame for frame, because the checkpoint recorded the settings."""
    out = tmp_path / "clip.mp4"
    args = ["render", "--out", str(out), "--num-frames", "17", "--chunk-frames", "4",
            "--lossless", "--tile-size", "48", "--tile-overlap", "16"]
    proc = start_until_the_decode_writes(args, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert ClipFiles(out).latents.exists() and not out.exists()
    again = cli(*args, "--quiet")
    assert again.returncode == 2 and "resume with `" in again.stderr, again.stderr
    advice = again.stderr.split("resume with `")[1].split("`")[0]
    argv = shlex.split(advice)
    assert argv[:2] == ["vidmem", "decode"] and "--tile-size" not in argv  # the bare advice
    done = cli(*argv[1:], "--quiet")
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference.mp4"
    ref = cli(*[a if a != str(out) else str(reference) for a in args], "--quiet")
    assert ref.returncode == 0, ref.stderr
    resumed, expected = read_video(out)[0], read_video(reference)[0]
    assert resumed.shape == expected.shape and np.array_equal(resumed, expected)


def test_a_resume_with_other_settings_says_so(tiny_pipe, tmp_path):
    """`vidmem decode` flags override the recorded settings and the report names each one."""
    out = tmp_path / "clip.mp4"
    vidmem.render(tiny_pipe, out, keep_latents=True, tile_size=48, lossless=True, **seeded())
    ckpt = load_checkpoint(ClipFiles(out).latents)
    assert ckpt.decode_options == vidmem.DecodeOptions(tile_size=48)
    assert ckpt.writer_settings == vidmem.WriterSettings(fps=16, lossless=True)
    notes = []
    report = vidmem.resume_decode(ckpt, tmp_path / "other.mp4", vae=tiny_pipe.vae,
                                  decode_options=vidmem.DecodeOptions(tile_size=64),
                                  on_note=notes.append)
    assert notes == ["the render decoded with tile_size=48; this resume uses tile_size=64 as "
                     "asked, so its frames can differ"]
    assert report.notes[:1] == notes
    same = vidmem.resume_decode(ckpt, tmp_path / "same.mp4", vae=tiny_pipe.vae)
    assert same.notes == []
    assert np.array_equal(read_video(tmp_path / "same.mp4")[0], read_video(out)[0])
