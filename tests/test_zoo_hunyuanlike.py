"""The Hunyuan-like zoo cases (hunyuan_video I2V / FramePack, hunyuan_video1_5 I2V, kandinsky5,
motif_video) build offline, render deterministically and survive a ``save_pretrained`` /
``from_pretrained`` round trip."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

#: the zoo builds' own checks (determinism, round trip); test_zoo_render renders them all
pytestmark = pytest.mark.slow

_MODULES = ("hunyuan_zoo", "kandinsky_zoo", "motif_zoo")


def _cases():
    params = []
    for name in _MODULES:
        module = importlib.import_module(f"zoo.{name}")
        for case in module.CASES:
            marks = [getattr(pytest.mark, m) for m in case.marks]
            params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def _frames(pipe, case) -> np.ndarray:
    with torch.no_grad():
        out = pipe(**case.call(), output_type="np")
    return np.asarray(out.frames)


def test_case_names_are_unique():
    names = [p.values[0].name for p in _cases()]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("case", _cases())
def test_zoo_case_builds_renders_and_round_trips(case, tmp_path):
    from zoo import save_and_load

    pipe = case.build(0)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == case.pipeline_class
    assert case.decode_pattern in ("final", "chunks", "in-loop", "tiles")

    first = _frames(pipe, case)
    assert first.ndim == 5 and first.shape[0] == 1 and first.shape[-1] == 3, first.shape
    assert first.shape[1] > 1
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(_frames(pipe, case), first)

    loaded = save_and_load(pipe, tmp_path / "pipe")
    assert type(loaded) is type(pipe)
    np.testing.assert_allclose(_frames(loaded, case), first, rtol=0, atol=1e-5)
