"""Small helpers callers use beside the verbs: byte sizes and peak memory.

``vidmem.utils.format_bytes(3 << 30)`` -> ``"3.00 GiB"``; ``parse_bytes("8GiB")`` -> bytes (what
``--budget`` takes); ``peak_rss_bytes()``: this process's peak resident memory (``VmHWM``).
"""

from .memory import format_bytes, parse_bytes, peak_rss_bytes

__all__ = ["format_bytes", "parse_bytes", "peak_rss_bytes"]
