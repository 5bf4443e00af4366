"""Progress on stderr: tqdm bars for decoded and written frames."""

from __future__ import annotations

from typing import Any


class Progress:
    """Progress lines on stderr: decoded and written frames (tqdm bars)."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.bars: dict[str, Any] = {}
        self.total = total

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total or self.total, desc=f"{stage:>7}",
                                          unit="frame", position=len(self.bars), leave=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
