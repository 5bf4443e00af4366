"""What vidmem's frozen option values share: a copy with the fields a caller gave.

Why: :class:`vidmem.DecodeOptions` and :class:`vidmem.WriterSettings` both take keyword
shortcuts over a base value, where ``None`` means "not given"; one function decides what a
shortcut changes and refuses a name the value does not have.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from .errors import InvalidOptions

V = TypeVar("V")


def with_given(value: V, changes: dict[str, Any], what: str) -> V:
    """``value`` with ``changes`` applied where they are not ``None`` (``value`` itself when none
    are); a name ``value`` has no field for raises :class:`InvalidOptions` naming ``what``."""
    given = {k: v for k, v in changes.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(value)}
    if unknown:
        raise InvalidOptions(f"unknown {what}: {', '.join(sorted(unknown))}")
    return dataclasses.replace(value, **given) if given else value
