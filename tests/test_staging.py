"""Device -> host staging (one reused buffer) and the in-place uint8 conversion."""

import pytest
import torch

from vidmem.io.frames import vae_pixels_to_uint8, vae_pixels_to_uint8_
from vidmem.io.staging import HostStager


def test_in_place_uint8_conversion_is_bit_identical():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, 5, 16, 24, generator=g) * 1.3  # some values beyond [-1, 1]
    pixels[0, 0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 0.5 / 127.5 - 1, 1.5 / 127.5 - 1])
    expected = vae_pixels_to_uint8(pixels)
    got = vae_pixels_to_uint8_(pixels.clone())
    assert got.dtype == torch.uint8 and got.shape == (5, 16, 24, 3)
    assert torch.equal(got, expected)
    half = pixels.to(torch.bfloat16)
    assert torch.equal(vae_pixels_to_uint8_(half.clone()), vae_pixels_to_uint8(half))
    assert torch.equal(half, pixels.to(torch.bfloat16))  # other dtypes: converted, not reused


def test_one_staging_buffer_is_reused_and_chunks_are_owned():
    stager = HostStager("cpu")
    g = torch.Generator().manual_seed(1)
    chunks = [torch.randint(0, 256, (n, 8, 12, 3), generator=g, dtype=torch.uint8)
              for n in (4, 4, 2)]
    out, pointers = [], []
    for chunk in chunks:
        stager.submit(chunk)
        pointers.append(stager.buffer.data_ptr())
        got = stager.collect()
        assert got.data_ptr() != stager.buffer.data_ptr()  # the caller's own copy
        out.append(got)
    assert stager.allocations == 1 and len(set(pointers)) == 1
    assert all(torch.equal(a, b) for a, b in zip(out, chunks))
    stager.submit(torch.zeros(8, 8, 12, 3, dtype=torch.uint8))  # larger: grown once
    assert stager.allocations == 2 and torch.equal(stager.collect(), torch.zeros(8, 8, 12, 3,
                                                                               dtype=torch.uint8))


def test_a_stager_sized_from_the_plan_never_grows():
    """The decode sizes the one staging buffer from its plan up front: every chunk a decode
    hands out fits it (with and without cross-fading windows), so it is allocated once."""
    import vidmem
    from vidmem.decode.stream import _largest_chunk_bytes
    from vidmem.tiny import tiny_wan_vae

    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 9, 8, 12, generator=torch.Generator().manual_seed(0))
    for options in ({"chunk_frames": 8}, {"chunk_frames": 2}, {"chunk_frames": 3,
                                                                 "overlap_frames": 2}):
        plan = vidmem.plan_decode(vae, z, **options)
        stager = HostStager("cpu", capacity=_largest_chunk_bytes(plan))
        chunks = list(vidmem.decode_latents(vae, z, **options))
        assert sum(len(c) for c in chunks) == plan.frames
        for chunk in chunks:
            stager.submit(chunk.contiguous())
            stager.collect()
        assert stager.allocations == 1, options


def test_staging_protocol_errors():
    stager = HostStager("cpu")
    with pytest.raises(RuntimeError, match="nothing submitted"):
        stager.collect()
    stager.submit(torch.zeros(1, 2, 2, 3, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="collect"):
        stager.submit(torch.zeros(1, 2, 2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        HostStager("cpu").submit(torch.zeros(1, 2, 2, 3))


@pytest.mark.gpu
def test_cuda_stream_hands_out_every_chunk_through_one_pinned_buffer():
    """On CUDA: chunks cross through one pinned buffer, each copy overlapped with the next
    decode, and the stream equals the CPU decode's frames."""
    import vidmem
    from vidmem.tiny import tiny_wan_vae

    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 9, 8, 12, generator=torch.Generator().manual_seed(0))
    cpu = torch.cat(list(vidmem.decode_latents(vae, z, chunk_frames=8)))
    allocations = []
    original = HostStager.collect

    def spy(self):
        allocations.append((self.allocations, self.buffer.is_pinned()))
        return original(self)

    HostStager.collect = spy
    try:
        gpu = list(vidmem.decode_latents(vae.cuda(), z.cuda(), chunk_frames=8))
    finally:
        HostStager.collect = original
    assert all(c.device.type == "cpu" and c.dtype == torch.uint8 for c in gpu)
    assert allocations and all(a == (1, True) for a in allocations)
    assert (torch.cat(gpu).int() - cpu.int()).abs().max() <= 1  # GPU vs CPU kernels
