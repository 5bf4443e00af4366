"""Whole-clip GroupNorm statistics: decode in pieces as if every norm had seen the whole clip.

Why: some video decoders (HunyuanVideo 1.0) are causal in time in every op but one: their
``GroupNorm`` layers normalize over *all* frames (and all pixels) of a decoder call. Decoded in
temporal windows or spatial tiles, each piece normalizes with its own statistics, so brightness
and contrast shift from window to window (steps at window boundaries) and from tile to tile.
Longer windows and better cross-fades only shrink the mismatch; the cure is to normalize every
piece with the statistics of the whole clip, which is what the full decode does. With those
statistics fixed, such a decoder is causal, and the family adapter streams it exactly with a
carried causal state (no re-decoded context, no cross-fade).

How: statistics passes over the same pieces (chunks x tiles, causal state carried by the adapter)
before the output pass, with one :class:`ClipNormStats` per spatial tile (a tile normalizes as it
would decoded over all frames in one call, as diffusers' tiled decode and vidmem's single-window
tiles do; whole-frame statistics pooled over tiles measured worse, since a tile's activations near
its border are not the frame's):

* :meth:`ClipNormStats.collecting`: while one piece decodes, each collected ``GroupNorm``
  accumulates, per sample and group, the count, mean and sum of squared deviations of its input
  (Chan's parallel merge, in float64), and normalizes the piece with the piece's own statistics
  (the plain ``GroupNorm``); a norm whose statistics are already final normalizes with those.
* :meth:`ClipNormStats.normalizing`: every ``GroupNorm`` normalizes with the gathered statistics
  (``torch.nn.functional.batch_norm`` in inference mode with per-channel statistics: the same
  arithmetic as ``group_norm`` once the statistics are given).

Two schedules (:func:`stages`):

* ``"estimate"`` (one statistics pass, the default): all norms collect at once. The first norm's
  statistics are exact (its input depends on no statistics); a later norm's are pooled from pieces
  whose earlier norms used the piece's own statistics, so they are estimates, and their errors
  compound with depth. About twice the decode time in all.
* ``"exact"``: one pass per norm, in execution order, each stopped right after its norm
  (:func:`stop_after`), with every earlier norm final: every norm's input is then exactly the full
  decode's, so the streamed clip equals the full decode up to float rounding. It costs the sum of
  the decoder's prefixes up to each norm (about 8 decodes for HunyuanVideo's 30 norms, most of
  whose cost is in its last, full-resolution block).

This module knows nothing about any family; adapters say which modules take part
(:meth:`FamilyAdapter.clip_norm_modules`).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .families.causal_cache import forwards_replaced

Schedule = Literal["estimate", "exact"]


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations per (sample, group), in float64."""

    count: float
    mean: torch.Tensor
    m2: torch.Tensor

    def merged(self, other: "_Moments") -> "_Moments":
        """Chan et al.'s parallel merge: the moments of both sets together."""
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta.square() * (self.count * other.count / n)
        return _Moments(n, mean, m2)

    def variance(self) -> torch.Tensor:
        return self.m2 / self.count  # biased, as GroupNorm's


class StopDecode(Exception):
    """Raised by :func:`stop_after` once the module it watches has run."""


@contextlib.contextmanager
def stop_after(module: nn.Module) -> Iterator[None]:
    """Abort the forward pass (with :class:`StopDecode`) right after ``module`` runs: a
    statistics pass for one norm needs nothing the decoder computes after it."""
    def hook(_module: nn.Module, _args: tuple, _out: torch.Tensor) -> None:
        raise StopDecode

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class ClipNormStats:
    """Whole-clip statistics for a set of ``nn.GroupNorm`` modules (one decode's worth)."""

    def __init__(self, modules: list[nn.Module]):
        for m in modules:
            if not isinstance(m, nn.GroupNorm):
                raise TypeError(f"whole-clip statistics are for nn.GroupNorm, got {type(m).__name__}")
        self.modules = list(modules)
        self._moments: dict[nn.Module, _Moments] = {}
        #: the order the norms ran in during the first collecting pass (for ``"exact"``).
        self.order: list[nn.Module] = []

    @property
    def complete(self) -> bool:
        """Whether every module has statistics."""
        return all(m in self._moments for m in self.modules)

    def reset(self, modules: list[nn.Module]) -> None:
        """Forget ``modules``' statistics (before a pass that collects them again)."""
        for m in modules:
            self._moments.pop(m, None)

    @contextlib.contextmanager
    def collecting(self, only: list[nn.Module] | None = None) -> Iterator[None]:
        """Run one piece's decode while ``only`` (default: every module) accumulate their input
        statistics and normalize with the piece's own; other modules that have statistics
        normalize with them."""
        collected = set(self.modules if only is None else only)
        fns = {}
        for m in self.modules:
            if m in collected:
                fns[m] = functools.partial(self._collect_forward, m)
            elif m in self._moments:
                fns[m] = functools.partial(self._fixed_forward, m)
        with forwards_replaced(fns):
            yield

    @contextlib.contextmanager
    def normalizing(self) -> Iterator[None]:
        """Run one piece's decode with every norm using the gathered whole-clip statistics."""
        missing = [m for m in self.modules if m not in self._moments]
        if missing:
            raise RuntimeError(f"{len(missing)} norm(s) have no statistics: run a collecting "
                               f"pass over the clip first")
        with forwards_replaced({m: functools.partial(self._fixed_forward, m)
                                for m in self.modules}):
            yield

    # --- forwards ---------------------------------------------------------------------------
    def _collect_forward(self, module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        if module not in self.order:
            self.order.append(module)
        with torch.no_grad():
            flat = x.reshape(x.shape[0], module.num_groups, -1).float()
            var, mean = torch.var_mean(flat, dim=-1, correction=0)
            n = flat.shape[-1]
            piece = _Moments(float(n), mean.double(), var.double() * n)
        previous = self._moments.get(module)
        self._moments[module] = piece if previous is None else previous.merged(piece)
        return F.group_norm(x, module.num_groups, module.weight, module.bias, module.eps)

    def _fixed_forward(self, module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        return _normalize(module, x, self._moments[module])


def stages(stats: ClipNormStats, schedule: Schedule) -> list[list[nn.Module]]:
    """The norms each further statistics pass collects, after a first pass that collected all
    (and recorded their execution order): none for ``"estimate"``; for ``"exact"`` every norm
    after the first, one per pass, in execution order (the first norm's input depends on no
    statistics, so the first pass already made it exact)."""
    if schedule == "estimate":
        return []
    if schedule == "exact":
        return [[m] for m in stats.order[1:]]
    raise ValueError(f"unknown statistics schedule {schedule!r}; use 'estimate' or 'exact'")


def _normalize(module: nn.GroupNorm, x: torch.Tensor, moments: _Moments) -> torch.Tensor:
    """``module(x)`` with the given per-(sample, group) statistics instead of ``x``'s own."""
    b, c = x.shape[:2]
    if moments.mean.shape[0] != b:
        raise ValueError(f"statistics for a batch of {moments.mean.shape[0]}, input has {b}")
    per_channel = c // module.num_groups
    mean = moments.mean.repeat_interleave(per_channel, dim=1).to(x.dtype)
    var = moments.variance().repeat_interleave(per_channel, dim=1).to(x.dtype)
    weight = module.weight if module.affine else None
    bias = module.bias if module.affine else None
    outs = [F.batch_norm(x[i:i + 1], mean[i], var[i], weight, bias, training=False,
                         eps=module.eps) for i in range(b)]
    return outs[0] if b == 1 else torch.cat(outs)
