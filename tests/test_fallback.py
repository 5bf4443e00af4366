"""Out-of-memory fallback: a decode that runs out of memory retries with smaller chunks, then
smaller tiles, says so, and still delivers every frame once, in order."""

import numpy as np
import pytest
import torch

import vidmem
from vidmem import metrics
from vidmem.decode.fallback import decode_with_fallback, is_out_of_memory
from vidmem.decode.families.wan import WanAdapter
from vidmem.tiny import tiny_wan_vae
from video_utils import read_video


@pytest.fixture(scope="module")
def vae_and_latents():
    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 6, 8, 12, generator=torch.Generator().manual_seed(0))
    return vae, z


def _oom_when(monkeypatch, too_big):
    """Make the Wan decoder 'run out of memory' on pieces ``too_big(z)`` says are too big."""
    original = WanAdapter.decode_piece
    seen = []

    def decode_piece(self, z, state, first):
        seen.append(tuple(z.shape))
        if too_big(z):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, z, state, first)

    monkeypatch.setattr(WanAdapter, "decode_piece", decode_piece)
    return seen


def _frames(chunks):
    return np.concatenate([c.numpy() for c in chunks])


def test_oom_in_a_later_chunk_halves_the_chunks_and_the_output_is_unchanged(vae_and_latents,
                                                                            monkeypatch):
    vae, z = vae_and_latents
    expected = _frames(vidmem.decode_latents(vae, z, chunk_frames=8, tile_size=0))
    calls = {"n": 0}

    def too_big(piece):  # the third piece of 2 latents fails: 13 frames were already delivered
        calls["n"] += 1
        return piece.shape[2] > 1 and calls["n"] >= 3

    _oom_when(monkeypatch, too_big)
    messages = []
    got = _frames(decode_with_fallback(vae, z, chunk_frames=8, tile_size=0,
                                       on_retry=messages.append))
    assert len(messages) == 1 and "out of memory at frame 13" in messages[0]
    assert "chunks of 1 latent frame" in messages[0]
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)  # causal cache: smaller chunks are the same computation


def test_when_one_latent_chunks_still_fail_tiles_shrink(vae_and_latents, monkeypatch):
    vae, z = vae_and_latents
    expected = _frames(vidmem.decode_latents(vae, z, chunk_frames=4, tile_size=0))
    seen = _oom_when(monkeypatch, lambda piece: piece.shape[-1] > 6)  # only half-width tiles fit
    messages = []
    got = _frames(decode_with_fallback(vae, z, chunk_frames=8, tile_size=0,
                                       on_retry=messages.append))
    assert len(messages) == 2 and "tiles of 6 latent px" in messages[1]
    assert max(s[-1] for s in seen[-4:]) <= 6
    assert got.shape == expected.shape
    psnr = metrics.psnr(torch.from_numpy(got).float() / 255,
                               torch.from_numpy(expected).float() / 255)
    assert psnr > 30


def test_fallback_gives_up_with_a_clear_error_and_render_keeps_the_latents(tiny_pipe, tmp_path,
                                                                           monkeypatch):
    _oom_when(monkeypatch, lambda piece: True)
    with pytest.raises(vidmem.DecodeFailed, match="out of memory even with .*vidmem decode") as e:
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", prompt="x", num_frames=9, height=64,
                      width=96, num_inference_steps=1)
    assert e.value.checkpoint.exists()
    assert not (tmp_path / "clip.mp4").exists()


def test_render_reports_its_retries(tiny_pipe, tmp_path, monkeypatch):
    _oom_when(monkeypatch, lambda piece: piece.shape[2] > 2)
    report = vidmem.render(tiny_pipe, tmp_path / "clip.mp4", prompt="x", num_frames=17, height=64,
                           width=96, num_inference_steps=1, chunk_frames=16)
    assert report.retries and "retried:" in str(report)
    frames, _ = read_video(tmp_path / "clip.mp4")
    assert frames.shape[0] == 17


def test_only_allocation_failures_are_retried():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
