"""How the command line reports an error: one line on stderr and an exit status chosen by the
error's class, from one table.

Why a table: the status tells a script whether to fix its input (2) or retry / look at the run
(1). Picking it by builtin type read a library bug raising ``ValueError`` as "your input"; here
every status comes from a vidmem error class (:mod:`vidmem.errors`), and anything else is a
failure of the run (1), shown with its type so it reads as the bug it is.
"""

from __future__ import annotations

import os
import sys
import traceback

from ..errors import (BudgetTooSmall, CheckpointError, DecodeFailed, GroupBroken, InvalidInput,
                      InvalidOptions, ModelNotFound, OutputError, PromptsFileError, RankFailed,
                      UnsupportedModel, VidmemError, WriterError)


class UsageError(InvalidOptions):
    """A problem with the command line itself (a flag, a combination of flags): status 2."""


#: exit status per error class; the most specific class in an error's MRO decides.
EXIT_STATUS: dict[type[BaseException], int] = {
    # the user can fix it: the message says how
    InvalidOptions: 2, InvalidInput: 2, UnsupportedModel: 2, ModelNotFound: 2,
    BudgetTooSmall: 2, OutputError: 2, CheckpointError: 2, PromptsFileError: 2,
    # the run failed (the work done so far is kept; the message says where)
    DecodeFailed: 1, WriterError: 1, RankFailed: 1, GroupBroken: 1,
    # any other vidmem error
    VidmemError: 1,
}
#: Ctrl-C (also :class:`vidmem.DecodeInterrupted`, which says what was kept).
INTERRUPTED_STATUS = 130


def exit_status(error: BaseException) -> int:
    """The exit status for ``error`` (see :data:`EXIT_STATUS`; 1 for anything else)."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED_STATUS
    for cls in type(error).__mro__:
        if cls in EXIT_STATUS:
            return EXIT_STATUS[cls]
    return 1


#: the API's words in vidmem's messages, and the CLI flag a command-line user passes instead.
CLI_WORDS = (("pass overwrite=True", "pass --overwrite"),)


def report_error(error: BaseException) -> int:
    """Print ``error`` as the CLI's one line on stderr and return its exit status.
    ``VIDMEM_DEBUG=1`` prints the traceback as well."""
    if os.environ.get("VIDMEM_DEBUG") and not isinstance(error, KeyboardInterrupt):
        traceback.print_exception(error)
    text = " ".join(str(error).split())
    for api, flag in CLI_WORDS:  # the library speaks in keyword arguments, the CLI in flags
        text = text.replace(api, flag)
    if isinstance(error, KeyboardInterrupt):
        # DecodeInterrupted says what was kept and how to resume; a bare Ctrl-C says nothing.
        print(f"vidmem: {text}" if text else "vidmem: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    if isinstance(error, VidmemError):
        print(f"vidmem: error: {text or type(error).__name__}", file=sys.stderr)
    else:  # not vidmem's refusal: say what broke, by its type
        print(f"vidmem: {type(error).__name__}: {text or 'no message'}", file=sys.stderr)
    return exit_status(error)
