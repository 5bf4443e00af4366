"""Reading videos back for tests (PyAV), independent of vidmem's writer."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def read_video(path) -> tuple[np.ndarray, Fraction]:
    """All frames of ``path`` as uint8 ``(T, H, W, 3)`` RGB, and the stream's average frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        rate = stream.average_rate
    return np.stack(frames), rate
