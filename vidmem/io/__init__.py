"""Frames in, MP4 out: layout conversion (``frames.py``) and the streaming writer (``writer.py``)."""

from .frames import to_uint8_frames
from .writer import VideoWriter, WriterError, available_encoders

__all__ = ["VideoWriter", "WriterError", "available_encoders", "to_uint8_frames"]
