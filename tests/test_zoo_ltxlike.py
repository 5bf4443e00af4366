"""The "ltxlike" zoo cases (``ltx_zoo``, ``ltx2_zoo``, ``cosmos_zoo``, ``helios_zoo``): each builds
offline, renders a finite ``(1, F, H, W, 3)`` clip, renders the same clip again from fresh
``call()`` kwargs, and renders the same clip after a ``save_pretrained`` / ``from_pretrained``
round trip."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

#: the zoo builds' own checks (determinism, round trip); test_zoo_render renders them all
pytestmark = pytest.mark.slow

from zoo import save_and_load

_MODULES = ("ltx_zoo", "ltx2_zoo", "cosmos_zoo", "helios_zoo")
_CASES = [case for name in _MODULES for case in importlib.import_module(f"zoo.{name}").CASES]


def _params():
    return [pytest.param(case, id=case.name,
                         marks=[getattr(pytest.mark, mark) for mark in case.marks])
            for case in _CASES]


def _render(pipe, case):
    out = pipe(**case.call(), output_type="np")
    frames = np.asarray(out.frames)
    audio = getattr(out, "audio", None)
    return frames, (None if audio is None else audio.detach().cpu().numpy())


def test_case_names_are_unique():
    names = [case.name for case in _CASES]
    assert len(names) == len(set(names))
    assert {case.decode_pattern for case in _CASES} <= {"final", "chunks", "in-loop", "tiles"}


@pytest.mark.parametrize("case", _params())
def test_zoo_case_renders_deterministically_and_round_trips(case, tmp_path):
    pipe = case.build(0)
    assert type(pipe).__name__ == case.pipeline_class
    assert all(not m.training for m in pipe.components.values() if isinstance(m, torch.nn.Module))

    frames, audio = _render(pipe, case)
    kwargs = case.call()
    assert frames.shape == (1, kwargs["num_frames"], kwargs["height"], kwargs["width"], 3)
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    assert frames.std() > 0  # not a constant clip

    again, audio_again = _render(pipe, case)
    np.testing.assert_array_equal(again, frames)

    loaded = save_and_load(pipe, tmp_path / "pipe")
    assert type(loaded) is type(pipe)
    reloaded, audio_reloaded = _render(loaded, case)
    np.testing.assert_allclose(reloaded, frames, rtol=0, atol=1e-5)

    if audio is not None:  # LTX-2: a stereo waveform at the vocoder's output rate
        assert audio.ndim == 3 and audio.shape[:2] == (1, 2) and audio.shape[2] > 0
        assert np.isfinite(audio).all()
        assert pipe.vocoder.config.output_sampling_rate > 0
        np.testing.assert_array_equal(audio_again, audio)
        np.testing.assert_allclose(audio_reloaded, audio, rtol=0, atol=1e-5)
