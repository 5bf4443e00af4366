"""Progress on stderr, for people and for logs.

Why two forms: on a terminal, one bar that redraws in place (decoded and written frames move
together, so they share it); in a log file or a CI job, redrawing writes ``\\r`` and cursor
escapes that a machine cannot read, so progress is plain lines there, at most one every
:data:`PLAIN_INTERVAL_S` seconds, plus the last one.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, TextIO

#: seconds between plain progress lines (non-terminal stderr).
PLAIN_INTERVAL_S = 5.0


class _PlainLines:
    """Rate-limited ``label: done/total unit`` lines."""

    def __init__(self, label: str, stream: TextIO, interval: float):
        self.label, self.stream, self.interval = label, stream, interval
        self.start = time.monotonic()
        self.last = -float("inf")

    def report(self, text: str, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.interval:
            self.last = now
            print(f"{self.label}: {text} ({now - self.start:.0f} s)", file=self.stream,
                  flush=True)


class _DenoiseSteps:
    """Stands in for a pipeline's tqdm step bar (``pipe.progress_bar``) with plain lines."""

    def __init__(self, lines: _PlainLines, iterable: Iterable | None, total: int | None):
        self.lines, self.iterable = lines, iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__")
                                                      else None)
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        done = self.total is not None and self.n >= self.total
        self.lines.report(f"step {self.n}/{self.total if self.total is not None else '?'}",
                          final=done)

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update()

    def __enter__(self) -> _DenoiseSteps:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass


class Progress:
    """``progress(stage, done, total)`` for :func:`vidmem.render`: decoded and written frames as
    one bar on a terminal, plain lines otherwise; :meth:`install_denoise` does the same for the
    pipeline's denoising steps."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None,
                 interval: float = PLAIN_INTERVAL_S):
        self.enabled = enabled
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.decoded = self.written = 0
        self._bar: Any = None
        self._lines = _PlainLines("decode+write", self.stream, interval)
        #: printed when the denoising starts (after every check passed).
        self.on_denoise: str | None = None

    def install_denoise(self, pipe: Any) -> None:
        """Route ``pipe``'s step progress here: diffusers' bar on a terminal, plain lines
        otherwise, nothing when disabled."""
        if not self.enabled:
            pipe.set_progress_bar_config(disable=True)
        elif self.tty:
            pipe.set_progress_bar_config(desc="denoise")
        else:
            lines = _PlainLines("denoise", self.stream, self.interval)
            pipe.progress_bar = lambda iterable=None, total=None: _DenoiseSteps(lines, iterable,
                                                                                total)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "denoise":  # every check passed; the pipeline starts
            if self.enabled and self.on_denoise:
                print(self.on_denoise, file=self.stream, flush=True)
            return
        if stage == "decode":
            self.decoded = done
            self.total = total or self.total
        else:
            self.written = done
        if not self.enabled:
            return
        text = f"decoded {self.decoded}, written {self.written} of {self.total or '?'} frames"
        if self.tty:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total or None, desc="decode+write", unit="frame",
                                 file=self.stream, leave=True)
            if self.total and self._bar.total != self.total:
                self._bar.total = self.total
            self._bar.update(self.written - self._bar.n)
            self._bar.set_postfix_str(f"decoded {self.decoded}", refresh=True)
        else:
            self._lines.report(text, final=bool(self.total) and self.written >= self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
