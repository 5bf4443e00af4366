"""Quality metrics for comparing a chunked/tiled decode with the full ``vae.decode``."""

from __future__ import annotations

import math

import torch

from .errors import InvalidInput

def psnr(a: torch.Tensor, b: torch.Tensor, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB between ``a`` and ``b`` whose values span ``peak_to_peak`` ([-1, 1] -> 2.0;
    uint8 -> 255.0). Identical inputs give ``inf``."""
    if a.shape != b.shape:
        raise InvalidInput(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(peak_to_peak**2 / mse)


def max_abs_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute elementwise difference."""
    if a.shape != b.shape:
        raise InvalidInput(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.double() - b.double()).abs().max().item()


def frame_steps(video: torch.Tensor, time_axis: int = 2) -> torch.Tensor:
    """Mean absolute difference between consecutive frames: entry ``i`` is the step from frame
    ``i`` to frame ``i + 1`` (averaged over every other axis), in float64."""
    v = video.double().movedim(time_axis, 0)
    return (v[1:] - v[:-1]).abs().flatten(1).mean(1)


def seam_ratio(video: torch.Tensor, boundaries: list[int], time_axis: int = 2) -> float:
    """The brightness step at window boundaries: the mean frame-to-frame change over the
    transitions into the frames in ``boundaries`` (frame ``b`` names the step from ``b - 1`` to
    ``b``), divided by the mean change over all other transitions.

    Why: a seam between two temporal windows shows as a jump between consecutive frames that is
    larger than the motion inside a window; 1.0 means the boundaries look like any other frame
    step (compute the same ratio on the full decode at the same frames for the baseline).
    ``nan`` when there is no boundary or no other transition.
    """
    steps = frame_steps(video, time_axis)
    mask = torch.zeros(steps.shape[0], dtype=torch.bool)
    for b in boundaries:
        if 1 <= b <= steps.shape[0]:
            mask[b - 1] = True
    if not mask.any() or mask.all():
        return math.nan
    return (steps[mask].mean() / steps[~mask].mean()).item()
