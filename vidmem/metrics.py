"""Quality metrics for comparing a chunked/tiled decode with the full ``vae.decode``."""

from __future__ import annotations

import math

import torch


def psnr(a: torch.Tensor, b: torch.Tensor, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB between ``a`` and ``b`` whose values span ``peak_to_peak`` ([-1, 1] -> 2.0;
    uint8 -> 255.0). Identical inputs give ``inf``."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(peak_to_peak**2 / mse)


def max_abs_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute elementwise difference."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.double() - b.double()).abs().max().item()
