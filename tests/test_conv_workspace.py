"""Splitting CPU slow_conv3d calls bounds their column buffer without changing a single bit."""

import pytest
import torch
import torch.nn.functional as F

from vidmem.decode.conv_workspace import (DEFAULT_MAX_WORKSPACE_BYTES, BoundedConvWorkspace,
                                          column_bytes,
                                          configured_max_bytes, piece_shape, split_conv3d)

CASES = [  # (c_in, c_out, t, h, w, kernel, stride, padding, dilation): output frames of
    # whole multiples of 64 positions, at least 4096 (piece_shape's rule), bands of rows
    (4, 4, 6, 130, 66, 3, 1, 0, 1),          # Wan's causal convs: padded outside, 3x3x3
    (4, 3, 5, 128, 64, 3, 1, 1, 1),          # padding inside the conv, 3 output channels
    (8, 8, 4, 128, 96, (3, 1, 1), 1, 0, 1),  # Wan's temporal conv, 96 wide
    (3, 5, 5, 257, 129, (2, 3, 3), (1, 2, 2), (1, 0, 1), 1),  # strides: 65-wide output
]  # (dilated convs never reach slow_conv3d: torch sends them to oneDNN)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_split_is_bit_identical_to_slow_conv3d(case, with_bias):
    c_in, c_out, t, h, w, kernel, stride, padding, dilation = case
    g = torch.Generator().manual_seed(0)
    kernel = (kernel,) * 3 if isinstance(kernel, int) else kernel
    x = torch.randn(1, c_in, t, h, w, generator=g)
    weight = torch.randn(c_out, c_in, *kernel, generator=g)
    bias = torch.randn(c_out, generator=g) if with_bias else None
    ref = F.conv3d(x, weight, bias, stride, padding, dilation)
    # a cap of a few rows' worth forces bands of rows (the smallest piece_shape allows)
    with BoundedConvWorkspace(max_bytes=20_000) as mode:
        got = F.conv3d(x, weight, bias, stride, padding, dilation)
    assert mode.split_calls == 1
    assert torch.equal(got, ref)


@pytest.mark.filterwarnings("ignore:TF32")
def test_batch_and_frame_runs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 66, 66, generator=g)
    weight = torch.randn(4, 3, 3, 3, 3, generator=g)
    with torch.backends.mkldnn.flags(enabled=False):  # else a batch of 2 goes to oneDNN
        ref = F.conv3d(x, weight)
    cap = column_bytes(x, weight, (2, 64, 64))  # two whole output frames per piece
    got, columns = split_conv3d(x, weight, None, (1, 1, 1), (0, 0, 0), (1, 1, 1), cap)
    assert torch.equal(got, ref)
    assert columns.numel() * columns.element_size() <= cap


def test_unaligned_frames_are_not_split_so_stay_exact():
    """A 3-channel conv over 33x47 frames split into row bands differed from the unsplit call in
    a few values (BLAS remainder kernels); such calls are left to torch."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 5, 33, 47, generator=g)
    weight = torch.randn(3, 4, 3, 3, 3, generator=g)
    with BoundedConvWorkspace(max_bytes=1000) as mode:
        got = F.conv3d(x, weight, padding=1)
    assert mode.split_calls == 0 and torch.equal(got, F.conv3d(x, weight, padding=1))
    assert piece_shape((5, 33, 47), 4 * 27 * 4, 1000) is None
    assert piece_shape((4, 480, 832), 4 * 27 * 4, 32 << 20) == (1, 93)  # 93 rows of 832


def test_one_column_buffer_is_reused_across_calls():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 6, 130, 66, generator=g)
    weight = torch.randn(4, 4, 3, 3, 3, generator=g)
    with BoundedConvWorkspace(max_bytes=50_000) as mode:
        F.conv3d(x, weight)
        first = mode._columns.data_ptr()
        F.conv3d(x, weight)
        assert mode._columns.data_ptr() == first and mode.split_calls == 2
    assert mode._columns is None  # released with the mode


def test_calls_that_do_not_need_it_pass_through():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 4, 66, 66, generator=g)
    weight = torch.randn(4, 4, 3, 3, 3, generator=g)
    with BoundedConvWorkspace(max_bytes=1 << 30) as mode:  # already under the cap
        F.conv3d(x, weight)
    assert mode.split_calls == 0
    big = torch.randn(1, 64, 6, 40, 40, generator=g)  # torch sends this one to oneDNN
    with BoundedConvWorkspace(max_bytes=1000) as mode:
        F.conv3d(big, torch.randn(64, 64, 3, 3, 3, generator=g))
        F.conv3d(x, weight, groups=1, padding="same")  # string padding
        F.conv2d(x[:, :, 0], weight[:, :, 0])
    assert mode.split_calls == 0
    x.requires_grad_(True)
    with BoundedConvWorkspace(max_bytes=1000) as mode:  # autograd keeps torch's own kernel
        F.conv3d(x, weight).sum().backward()
    assert mode.split_calls == 0 and x.grad is not None
    with BoundedConvWorkspace(max_bytes=1000) as mode:  # float64's BLAS blocks differently
        F.conv3d(x.detach().double(), weight.double())
    assert mode.split_calls == 0


def test_environment_sets_or_disables_the_cap(monkeypatch):
    monkeypatch.delenv("VIDMEM_CONV_WORKSPACE", raising=False)
    assert configured_max_bytes() == DEFAULT_MAX_WORKSPACE_BYTES == 64 << 20
    monkeypatch.setenv("VIDMEM_CONV_WORKSPACE", "8MiB")
    assert configured_max_bytes() == 8 << 20
    monkeypatch.setenv("VIDMEM_CONV_WORKSPACE", "0")
    assert configured_max_bytes() is None
    monkeypatch.setenv("VIDMEM_CONV_WORKSPACE", "lots")
    with pytest.raises(ValueError, match="VIDMEM_CONV_WORKSPACE"):
        configured_max_bytes()
