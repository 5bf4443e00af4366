"""Plan pure, execute apart: a clip's facts live in its DecodePlan, adapters keep none, and the
planner reads no device state.

Why these tests: the offload simulator, the memory measurements and the out-of-memory fallback
each execute a plan with an adapter of their own. When the facts of a clip (CogVideoX's odd first
frame batch, an image VAE's 5-D layout) were set on the planner's adapter as a side effect, any
other adapter decoded the clip with the defaults: an even CogVideoX clip was simulated with the
odd clip's batches.
"""

from types import SimpleNamespace

import pytest
import torch

from family_vaes import tiny_cogvideox_vae, tiny_image_vae
from vidmem import decode_latents, plan_decode
from vidmem.decode.families import adapter_for
from vidmem.decode.families.cogvideox import CogVideoXAdapter, CogVideoXFacts
from vidmem.decode.options import DecodeOptions
from vidmem.decode.stream import device_chunks, free_device_bytes_for
from vidmem.errors import InvalidOptions
from vidmem.offload.stages import Workload, simulate_decode


@pytest.fixture(scope="module")
def cogvideox_vae():
    return tiny_cogvideox_vae()


@pytest.fixture(scope="module")
def image_vae():
    return tiny_image_vae()


def _pieces(monkeypatch):
    """Record ``(latent frames in, pixel frames out)`` of every CogVideoX piece decoded."""
    seen: list[tuple[int, int]] = []
    original = CogVideoXAdapter.decode_piece

    def decode_piece(self, z, state, first):
        out = original(self, z, state, first)
        seen.append((int(z.shape[2]), int(out.shape[2])))
        return out

    monkeypatch.setattr(CogVideoXAdapter, "decode_piece", decode_piece)
    return seen


def test_the_plan_carries_cogvideox_batching_and_planning_changes_no_adapter(cogvideox_vae):
    adapter = adapter_for(cogvideox_vae)
    before = dict(vars(adapter))
    even = plan_decode(cogvideox_vae, torch.zeros(1, 4, 4, 6, 8), tile_size=0, adapter=adapter)
    odd = plan_decode(cogvideox_vae, torch.zeros(1, 4, 5, 6, 8), tile_size=0, adapter=adapter)
    assert vars(adapter) == before
    assert isinstance(even.facts, CogVideoXFacts) and not even.facts.first_batch_odd
    assert odd.facts.first_batch_odd
    assert (even.frames, odd.frames) == (16, 17)


def test_a_fresh_adapter_executes_an_even_cogvideox_plan_exactly(cogvideox_vae):
    """``device_chunks`` with another adapter than the planner's (what the simulator and the
    measurements do) decodes the even clip with its even batches: equal to the full decode."""
    z = torch.randn(1, 4, 4, 6, 8, generator=torch.Generator().manual_seed(2))
    plan = plan_decode(cogvideox_vae, z, chunk_frames=16, tile_size=0)
    with torch.no_grad():
        ref = cogvideox_vae.decode(z).sample
        out = torch.cat([chunk for _, chunk in device_chunks(adapter_for(cogvideox_vae), z, plan,
                                                             "pt")], dim=2)
    assert out.shape == ref.shape and ref.shape[2] == 16
    assert (out - ref).abs().max().item() <= 1e-4


def test_the_simulator_decodes_a_cogvideox_clip_with_the_real_batching(cogvideox_vae, monkeypatch):
    """The offload simulator builds its own adapter for the fake-tensor decode; its pieces are
    the real decode's (an even clip's first piece is not given the odd clip's 3-frame batch)."""
    z = torch.randn(1, 4, 4, 6, 8, generator=torch.Generator().manual_seed(3))
    seen = _pieces(monkeypatch)
    with torch.no_grad():
        real_chunks = list(decode_latents(cogvideox_vae, z, chunk_frames=16, tile_size=0,
                                          output_type="pt"))
    real = list(seen)
    seen.clear()
    _stage, plan = simulate_decode(cogvideox_vae, torch.empty(1, 4, 4, 6, 8, device="meta"),
                                   DecodeOptions(chunk_frames=16, tile_size=0), target="cpu")
    assert real == seen == [(4, 16)]
    assert plan.frames == sum(c.shape[2] for c in real_chunks) == 16


def test_an_image_vae_plan_carries_its_layout(image_vae):
    frames = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    video = frames.permute(1, 0, 2, 3).unsqueeze(0)
    adapter = adapter_for(image_vae)
    before = dict(vars(adapter))
    as_video = plan_decode(image_vae, video, tile_size=0, adapter=adapter)
    as_frames = plan_decode(image_vae, frames, tile_size=0, adapter=adapter)
    assert vars(adapter) == before
    assert as_video.facts.native_5d and as_video.facts.native_time_axis == 2
    assert not as_frames.facts.native_5d and as_frames.facts.native_time_axis == 0
    # planned for the video, executed by a fresh adapter: the pixels come back as a video
    with torch.no_grad():
        chunks = [c for _, c in device_chunks(adapter_for(image_vae), video, as_video, "pt")]
    assert chunks[0].ndim == 5 and chunks[0].shape[2] == 3


def test_the_planner_reads_no_device_memory_the_executor_does(image_vae, monkeypatch):
    """On a CUDA VAE the automatic tile comes from ``free_device_bytes``, which the planner is
    given; only the executor's :func:`free_device_bytes_for` asks the device."""
    def no_reading(device=None):
        raise AssertionError("the planner read the device's free memory")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_reading)
    monkeypatch.setattr(image_vae, "_hf_hook", SimpleNamespace(execution_device="cuda"),
                        raising=False)
    z = torch.empty(1, 4, 1, 64, 64, device="meta")  # 128x128 pixels
    roomy = plan_decode(image_vae, z, free_device_bytes=64 << 30)
    tight = plan_decode(image_vae, z, free_device_bytes=32 << 20)
    assert roomy.tile_latent is None and tight.tile_latent is not None
    assert plan_decode(image_vae, z).tile_latent is None  # no reading: the CPU rule
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (32 << 20, 1 << 34))
    assert free_device_bytes_for(image_vae) == 32 << 20


def test_options_and_shortcuts_give_the_same_plan(cogvideox_vae):
    z = torch.zeros(1, 4, 6, 6, 8)
    options = DecodeOptions(chunk_frames=8, tile_size=0)
    assert plan_decode(cogvideox_vae, z, options) == plan_decode(cogvideox_vae, z, chunk_frames=8,
                                                                 tile_size=0)
    assert plan_decode(cogvideox_vae, z, options, chunk_frames=4).chunk_latents == 1
    workload = Workload(9, 64, 96, decode=options, tile_overlap=16)
    assert workload.decode == DecodeOptions(chunk_frames=8, tile_size=0, tile_overlap=16)
    assert Workload.for_call({"num_frames": 9}, chunk_frames=8).decode.chunk_frames == 8
    with pytest.raises(InvalidOptions, match="chunk_frames must be at least 1"):
        plan_decode(cogvideox_vae, z, chunk_frames=0)
