"""Frames in, MP4 out: layout conversion (``frames.py``), the writer's settings
(``settings.py``) and the streaming writer (``writer.py``)."""

from .frames import to_uint8_frames
from .settings import WriterSettings, available_encoders
from .writer import VideoWriter

__all__ = ["VideoWriter", "WriterSettings", "available_encoders", "to_uint8_frames"]
