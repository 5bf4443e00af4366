"""Shared fixtures: tiny models built offline with fixed seeds; GPU tests skipped without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

# pytest-xdist runs one worker per core: each worker's share of the cores, at most 2 threads.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _workers)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_pipe():
    from vidmem import tiny_pipeline

    pipe = tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def spy_denoise(tiny_pipe):
    """Counts transformer calls: a check that must come before the denoising leaves it at 0."""
    calls = []
    original = tiny_pipe.transformer.forward
    tiny_pipe.transformer.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    yield calls
    tiny_pipe.transformer.forward = original
