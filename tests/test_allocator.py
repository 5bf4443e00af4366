"""malloc tuning (vidmem.allocator) and the peak breakdown (vidmem.breakdown)."""

import sys

import pytest
import torch
import torch.nn.functional as F

from vidmem import allocator
from vidmem.breakdown import MemoryProbe, sweep_c10_events


@pytest.fixture
def fresh_allocator(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    for name in ("VIDMEM_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                 "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.skipif(not sys.platform.startswith("linux") or allocator.glibc() is None,
                    reason="glibc only")
def test_tuning_applies_once_on_glibc(fresh_allocator):
    applied = allocator.tune_for_decode()
    assert applied == {"M_MMAP_THRESHOLD": allocator.MMAP_THRESHOLD,
                       "M_TRIM_THRESHOLD": allocator.TRIM_THRESHOLD}
    assert allocator.tune_for_decode() is applied
    allocator.trim()


@pytest.mark.parametrize("env", [{"VIDMEM_MALLOC_TUNING": "0"},
                                 {"MALLOC_MMAP_THRESHOLD_": "1048576"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_a_users_own_malloc_settings_win(fresh_allocator, monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert allocator.tune_for_decode() is None


def test_not_glibc_is_a_no_op(fresh_allocator, monkeypatch):
    monkeypatch.setattr(allocator, "glibc", lambda: None)
    assert allocator.tune_for_decode() is None
    allocator.trim()


def test_sweep_splits_lasting_from_transient_bytes():
    ops = [(10, 20, "aten::conv3d"), (30, 40, "aten::add")]
    memory = [(5, 100),            # between ops: a live tensor
              (11, 50), (12, 700), (13, -700),  # conv3d: output 50 stays, 700 scratch
              (25, -100),          # a tensor dies between ops
              (31, 60), (32, 30), (33, -30)]    # add: output 60, 30 scratch
    s = sweep_c10_events(ops, memory)
    assert s.peak == 850 and s.peak_transient == 700      # 150 lasting + 700 scratch
    assert s.live_peak == 150
    assert (s.largest_op, s.largest) == ("aten::conv3d", 700)


def test_probe_sees_a_slow_conv3d_column_buffer():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 66, 130, generator=g)
    weight = torch.randn(4, 4, 3, 3, 3, generator=g)
    columns = 4 * 27 * 4 * 64 * 128 * 4  # slow_conv3d's im2col buffer for this call
    with MemoryProbe() as probe:
        with torch.no_grad():
            y = F.conv3d(x, weight)
            y = y * 2
    b = probe.result
    assert b.largest_workspace >= columns and "conv" in b.largest_workspace_op
    assert b.kernel_workspaces >= columns
    assert b.live_tensors >= y.numel() * 4
    assert b.baseline_rss + b.live_tensors + b.kernel_workspaces + b.allocator_overhead \
        == b.peak_rss
    assert "kernel workspaces" in str(b) and b.to_dict()["over_baseline"] == b.over_baseline
