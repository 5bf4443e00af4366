"""glibc malloc settings for a streaming decode, applied at run time (``mallopt`` via ctypes).

Why: a CPU decode allocates and frees activations of a few to a few dozen MiB, thousands of times.
glibc serves a request from ``mmap`` only above its mmap threshold, and that threshold is
*dynamic*: each time an mmapped block is freed, it rises to that block's size (up to 32 MiB). After
the first few activations the threshold sits above them, so they come from the heap, whose free
space fragments into holes the next, differently sized activation does not fit; the heap can only
shrink from its top. Measured on the README's realistic Wan config (480x832, one decode chunk), the
heap held 827 MiB at the peak of which 522 MiB was free (``mallinfo2``), i.e. more than the live
tensors and workspaces together. ``MALLOC_ARENA_MAX=1`` does not help (the waste is in the main
arena), a fixed threshold does: at 4 MiB the heap's free space at the peak fell to 57 MiB.

Which threshold: at 4 MiB the heap still fragmented slowly, chunk after chunk, as blocks of 1-4
MiB (activation slices, the encoder's frames) came and went: on that config, 81 frames written
to MP4 in 16-frame chunks, the peak rose from 880 MiB in the first chunk to 955 MiB by the third
(the heap's free space at the peak 65 -> 136 MiB), so short clips peaked lower than long ones.
Peaks measured the same way (first chunk -> steady; CPU seconds): 4 MiB 880 -> 955 (185 s),
2 MiB 857 -> 917 (191 s), **1 MiB 828 -> 858 (194 s)**, 512 KiB 825 -> 848 (196 s). At 1 MiB
the peak is ~100 MiB lower and steady from the second chunk on, for ~5% more CPU time.

So, once per process before a CPU decode, :func:`tune_for_decode` fixes
``M_MMAP_THRESHOLD`` at :data:`MMAP_THRESHOLD` (which also stops the dynamic adjustment): every
block of 1 MiB or more is its own mapping, returned to the OS when freed, and cannot fragment the
heap. The price is a page fault per 4 KiB each time such a block is touched anew; the one big
temporary that used to dominate those faults (the convolution's column buffer) is now allocated
once per chunk and reused (:mod:`vidmem.decode.conv_workspace`). ``M_TRIM_THRESHOLD`` is raised
to :data:`TRIM_THRESHOLD` so that small blocks freed at the heap's top are kept for the next
operator instead of being returned and faulted in again (fixing the mmap threshold would
otherwise pin the trim threshold at its 128 KiB default); the per-chunk ``malloc_trim`` still
returns everything free between chunks.

Not glibc (macOS, Windows, musl): nothing is done. A user's own choice wins: when
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc`` tunable is set in
the environment, or ``VIDMEM_MALLOC_TUNING=0``, nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

log = logging.getLogger("vidmem")

#: glibc's ``mallopt`` parameter numbers (``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks of at least this many bytes are mmapped (see the module docstring).
MMAP_THRESHOLD = 1 << 20
#: Free space at the heap's top kept for reuse instead of being returned to the OS.
TRIM_THRESHOLD = 32 << 20

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "MALLOC_MMAP_MAX_")

_libc: Any = None
_applied: dict[str, int] | None = None


def glibc() -> Any:
    """The C library when it is glibc (it has ``gnu_get_libc_version``), else ``None``."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(None)
            lib.gnu_get_libc_version.restype = ctypes.c_char_p
            lib.gnu_get_libc_version()
            lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc = lib
        except (OSError, AttributeError, TypeError):
            _libc = False
    return _libc or None


def user_has_chosen() -> bool:
    """Whether the environment already configures malloc (then vidmem leaves it alone)."""
    if os.environ.get("VIDMEM_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return True
    if any(name in os.environ for name in _USER_SETTINGS):
        return True
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def tune_for_decode() -> dict[str, int] | None:
    """Apply the decode's malloc settings once per process; return what was set (``None``: not
    glibc, or the user configured malloc). Settings are process-wide and stay in effect."""
    global _applied
    if _applied is not None:
        return _applied
    lib = glibc()
    if lib is None or user_has_chosen():
        return None
    settings = {"M_MMAP_THRESHOLD": MMAP_THRESHOLD, "M_TRIM_THRESHOLD": TRIM_THRESHOLD}
    numbers = {"M_MMAP_THRESHOLD": M_MMAP_THRESHOLD, "M_TRIM_THRESHOLD": M_TRIM_THRESHOLD}
    applied = {}
    for name, value in settings.items():
        if lib.mallopt(numbers[name], value) == 1:
            applied[name] = value
        else:
            log.debug("mallopt(%s, %d) refused", name, value)
    _applied = applied
    return _applied


def trim() -> None:
    """Return free heap memory to the OS (``malloc_trim(0)``: the heap's top and whole free pages
    inside it, in every arena); a no-op where the C library is not glibc."""
    lib = glibc()
    if lib is not None:
        lib.malloc_trim(0)
