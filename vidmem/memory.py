"""Measuring memory and parsing memory sizes.

Why ``VmHWM``: a benchmark child started with fork+exec inherits ``ru_maxrss`` from the parent's
memory at fork time, hiding the child's real peak. ``/proc/self/status``'s ``VmHWM`` is the
process's own high-water mark.
"""

from __future__ import annotations

import re
import resource
import sys

import torch

from .errors import InvalidOptions
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: str | int | float) -> int:
    """``"8GiB"``, ``"6GB"``, ``"500MiB"``, ``"1.5G"`` or a number of bytes -> bytes.

    Decimal units (KB, MB, GB) are powers of 1000 and binary ones (KiB, MiB, GiB) powers of 1024,
    as their names say; a bare ``G``/``M``/``K`` is read as decimal.
    """
    if isinstance(value, bool):
        raise InvalidOptions(f"not a memory size: {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise InvalidOptions(f"a memory size must be positive, got {value!r}")
        return int(value)
    text = str(value).strip()
    if text.startswith("-"):  # a negative size is a size, just not a valid one: say so
        raise InvalidOptions(f"a memory size must be positive, got {value!r}")
    m = _SIZE_RE.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise InvalidOptions(f"cannot parse memory size {value!r}: use a number with a unit such as "
                         f"8GiB, 6GB or 500MiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise InvalidOptions(f"a memory size must be positive, got {value!r}")
    return size


def format_bytes(n: int | float) -> str:
    """Bytes as a short human string in binary units (``1.50 GiB``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or ``None`` where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    peak = _proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def current_rss_bytes() -> int:
    """This process's current resident set size (``VmRSS``)."""
    current = _proc_status_bytes("VmRSS")
    return current if current is not None else peak_rss_bytes()


def release_host_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    Why: each decoded chunk allocates and frees large, differently sized buffers (activations,
    tile outputs, the encoder's frames). glibc keeps freed memory in its heaps, so without a trim
    the resident set creeps up chunk after chunk and peak RSS grows with clip length even though
    nothing is retained. Called once per chunk; it costs about a millisecond. (The settings that
    keep the heap from fragmenting *within* a chunk are in :mod:`vidmem.allocator`.)
    """
    from .allocator import trim

    trim()


def cuda_peak_bytes(device: torch.device | str | None = None) -> int | None:
    """``torch.cuda.max_memory_allocated`` where CUDA is in use, else ``None``."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.max_memory_allocated(device))
