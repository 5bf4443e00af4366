"""Latent checkpoints: a decode that fails mid-clip keeps the latents, and `vidmem decode` then
produces the same file as an uninterrupted render."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import vidmem
from vidmem.checkpoint import load_checkpoint
from vidmem.files import ClipFiles
from video_utils import read_video

CALL = dict(prompt="a lighthouse at dusk", num_frames=13, height=64, width=96,
            num_inference_steps=2)


def test_failed_decode_keeps_latents_and_decode_resumes_identically(tiny_pipe, tmp_path, monkeypatch):
    good = tmp_path / "good.mp4"
    vidmem.render(tiny_pipe, good, chunk_frames=4, lossless=True,
                  generator=torch.Generator().manual_seed(0), **CALL)
    assert not ClipFiles(good).latents.exists()  # removed after success

    out = tmp_path / "clip.mp4"
    original = vidmem.VideoWriter.write
    calls = []

    def failing_write(self, frames):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full (simulated)")
        return original(self, frames)

    monkeypatch.setattr(vidmem.VideoWriter, "write", failing_write)
    with pytest.raises(vidmem.DecodeFailed, match="vidmem decode .*clip.latents.safetensors") as e:
        vidmem.render(tiny_pipe, out, chunk_frames=4, lossless=True,
                      generator=torch.Generator().manual_seed(0), **CALL)
    monkeypatch.undo()
    ckpt = e.value.checkpoint
    assert ckpt == ClipFiles(out).latents and ckpt.exists()
    assert not out.exists()  # no half-written file under the final name
    meta = load_checkpoint(ckpt)
    assert meta.family == "wan" and meta.model == "vidmem-tiny:wan:0" and meta.frames == 13

    proc = subprocess.run([sys.executable, "-m", "vidmem", "decode", str(ckpt), "--out", str(out),
                           "--lossless", "--chunk-frames", "8", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    resumed, rate = read_video(out)
    expected, _ = read_video(good)
    assert resumed.shape == expected.shape == (13, 64, 96, 3) and rate == 16
    assert np.array_equal(resumed, expected)


def test_resume_reproduces_a_noise_injecting_decoder(tmp_path, monkeypatch):
    """LTX-Video's decoder adds noise drawn from the global RNG: the checkpoint carries the RNG
    state the decode started from, so a resumed decode in a fresh process is identical."""
    pipe = vidmem.tiny_pipeline("ltx", seed=0)
    pipe.set_progress_bar_config(disable=True)
    call = dict(prompt="a lighthouse", num_frames=17, height=64, width=96, num_inference_steps=2)
    good = tmp_path / "good.mp4"
    torch.manual_seed(5)
    vidmem.render(pipe, good, chunk_frames=8, lossless=True,
                  generator=torch.Generator().manual_seed(0), **call)
    out = tmp_path / "clip.mp4"
    monkeypatch.setattr(vidmem.VideoWriter, "write", lambda self, frames: 1 / 0)
    torch.manual_seed(5)
    with pytest.raises(vidmem.DecodeFailed) as e:
        vidmem.render(pipe, out, chunk_frames=8, lossless=True,
                      generator=torch.Generator().manual_seed(0), **call)
    monkeypatch.undo()
    meta = load_checkpoint(e.value.checkpoint)
    assert meta.family == "ltx" and "temb" in meta.decode_input.decode_kwargs
    assert "cpu" in meta.rng_states
    proc = subprocess.run([sys.executable, "-m", "vidmem", "decode", str(e.value.checkpoint),
                           "--out", str(out), "--lossless", "--chunk-frames", "8", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    resumed, rate = read_video(out)
    expected, _ = read_video(good)
    assert rate == 25  # the frame rate LTX conditions on by default, recorded in the checkpoint
    assert np.array_equal(resumed, expected)


def test_keep_latents_and_bad_checkpoint_errors(tiny_pipe, tmp_path):
    out = tmp_path / "keep.mp4"
    vidmem.render(tiny_pipe, out, keep_latents=True, generator=torch.Generator().manual_seed(0),
                  **CALL)
    assert ClipFiles(out).latents.exists()
    bogus = tmp_path / "bogus.latents.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    proc = subprocess.run([sys.executable, "-m", "vidmem", "decode", str(bogus), "--out",
                           str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a readable safetensors file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
