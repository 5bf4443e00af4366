"""One job split over several ranks, and how a failure on any rank stops all of them.

Why this shape: a rank that raises while the others wait in a collective would leave them blocked
until the timeout (30 minutes by default), and a rank that gives up alone leaves the others with
half a job. So every collective of a split job outside the tile exchange is an *agreement*
(:meth:`SplitSession.agree`): each rank contributes "ok" or its error, and if any rank reports an
error every rank raises the same :class:`RankFailed`, naming the rank(s) and error(s). A rank
whose code raises anywhere in a split job (see :meth:`SplitSession.guard` and :func:`split_job`)
contributes its error at its next agreement; the others meet it at theirs, since all ranks pass
the same sequence of agreements. Because every rank raises the same exception at the same point,
they all take the same path afterwards (e.g. the decode's out-of-memory retry), so the job either
goes on everywhere or stops everywhere.

One process alone runs the same code through :class:`SoloSession`: its agreements return its own
payload, its guard lets errors through unchanged, and it is always the writer. So the render,
the decode, the batch and the command line never ask "am I distributed?" before an agreement;
:meth:`SplitSession.resolve` gives one or the other.

A rank that dies outright (killed, segfault) cannot report: ``torchrun`` then stops the other
ranks, or, without ``torchrun``, the others fail at the group's timeout with
:class:`GroupBroken`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from typing import Any, Callable, Iterator, TypeVar, Union

import torch.distributed as dist

from ..errors import GroupBroken, RankFailed
from .group import Group, resolve_group


def describe(error: BaseException) -> str:
    """``Type: first line of the message``: what a one-line report needs."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def describe_transport(error: BaseException) -> str:
    """:func:`describe` for a torch.distributed transport error, without the backend's source
    location and boilerplate advice (gloo: ``[.../pair.cc:537] Read error ...: Connection reset
    by peer. This is typically caused by ...``)."""
    text = describe(error)
    kind, _, message = text.partition(": ")
    message = re.sub(r"^\[[^\]]*\]\s*", "", message)
    message = message.split(". ")[0].rstrip(".")
    return f"{kind}: {message}" if message else kind


def already_agreed(error: BaseException) -> bool:
    """Whether every rank already knows of ``error``: it is, wraps or was raised while handling a
    :class:`RankFailed` (or the group is gone: :class:`GroupBroken`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (RankFailed, GroupBroken)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class SoloSession:
    """One process working alone: the session API of :class:`SplitSession` for a world of one.

    Agreements return this process's own payload (an error given to one is raised as it is:
    there is nobody to tell), the guard is transparent, and the process is rank 0, the writer.
    """

    rank = 0
    size = 1
    is_writer = True
    broken = False
    group = None

    @property
    def splits(self) -> bool:
        """Whether work is shared with other processes (never, here)."""
        return False

    def agree(self, payload: Any = None, error: BaseException | None = None) -> list[Any]:
        if error is not None:
            raise error
        return [payload]

    def fail(self, error: BaseException) -> None:
        raise error

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        yield

    def share(self, payload: Any) -> Any:
        return payload

    def __repr__(self) -> str:
        return "SoloSession()"


#: what every session-taking function accepts and returns.
Session = Union["SplitSession", SoloSession]


class SplitSession:
    """The ranks of one split job and the agreements they pass through together."""

    def __init__(self, group: Group):
        self.group = group
        #: set when a collective failed at the transport level: no agreement is possible any more.
        self.broken = False

    @property
    def rank(self) -> int:
        return self.group.rank

    @property
    def size(self) -> int:
        return self.group.size

    @property
    def is_writer(self) -> bool:
        return self.group.is_writer

    @property
    def splits(self) -> bool:
        """Whether work is shared with other processes (always, here)."""
        return True

    @classmethod
    def resolve(cls, process_group: Any) -> Session:
        """A session for ``process_group`` (see :func:`vidmem.parallel.resolve_group`), the given
        session itself, or a :class:`SoloSession` when this process works alone."""
        if isinstance(process_group, (SplitSession, SoloSession)):
            return process_group
        group = resolve_group(process_group)
        return SoloSession() if group is None else cls(group)

    def agree(self, payload: Any = None, error: BaseException | None = None) -> list[Any]:
        """Exchange ``payload`` (a picklable object) or ``error`` with every rank.

        Returns every rank's payload, indexed by rank, when no rank reported an error; otherwise
        raises :class:`RankFailed` on every rank (chained to ``error`` on the rank that had one).
        """
        if self.broken:
            raise GroupBroken("the process group is no longer usable (an earlier collective "
                              "failed)")
        status = None if error is None else describe(error)
        gathered: list[Any] = [None] * self.size
        try:
            dist.all_gather_object(gathered, (status, None if error is not None else payload),
                                   group=self.group.pg)
        except Exception as e:  # noqa: BLE001 - any transport error ends the group
            self.broken = True
            raise GroupBroken(f"lost contact with the other ranks ({describe_transport(e)}): a "
                              f"rank died, or hung longer than the process group's timeout") from e
        failures = [(rank, s) for rank, (s, _) in enumerate(gathered) if s is not None]
        if failures:
            if error is not None:
                raise RankFailed(failures) from error
            raise RankFailed(failures)
        return [p for _, p in gathered]

    def fail(self, error: BaseException) -> None:
        """Report ``error`` at this rank's next agreement; always raises :class:`RankFailed` (or
        :class:`GroupBroken`)."""
        self.agree(error=error)
        raise AssertionError("unreachable: an agreement with an error always raises")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run a block of a split job so that an exception in it stops every rank: an error that
        the other ranks have not been told about yet is reported at the next agreement."""
        try:
            yield
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt too: the others must stop
            if self.broken or already_agreed(e):
                raise
            self.fail(e)

    def share(self, payload: Any) -> Any:
        """Rank 0's ``payload`` on every rank (the others' arguments are ignored)."""
        return self.agree(payload if self.rank == 0 else None)[0]


F = TypeVar("F", bound=Callable[..., Any])


def split_job(fn: F) -> F:
    """Decorate an API function that takes ``process_group=``: the argument is resolved to a
    session (:class:`SplitSession`, or :class:`SoloSession` for one process) before the call,
    and the call runs under its guard, so an exception on one rank stops every rank. Nested
    calls share the session (a session passed as ``process_group`` is used as is)."""
    if "process_group" not in inspect.signature(fn).parameters:
        raise TypeError(f"{fn.__name__} takes no process_group")

    @functools.wraps(fn)
    def wrapper(*args: Any, process_group: Any = None, **kwargs: Any) -> Any:
        session = SplitSession.resolve(process_group)
        with session.guard():
            return fn(*args, process_group=session, **kwargs)

    return wrapper  # type: ignore[return-value]
