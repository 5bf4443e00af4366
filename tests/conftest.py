"""Shared fixtures: tiny models built offline with fixed seeds; GPU tests skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


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
