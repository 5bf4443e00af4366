"""The ``vidmem`` command line: parse, validate, call the API, report.

One module per subcommand (``cmd_render``, ``cmd_decode``, ``cmd_plan``); what they share (value
types, decode options, the checks they must agree on) is in ``options``; progress output in
``progress``.

Errors print one line to stderr and exit with the status ``errors.EXIT_STATUS`` gives their
class: 2 for what the user can fix (bad sizes, missing directories, unsupported models), before
any model work starts where possible; 1 for a failure of the run, or anything that is not a
vidmem error (``VIDMEM_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import Any, Sequence

from . import cmd_decode, cmd_plan, cmd_render
from .errors import UsageError, report_error
from .options import HelpFormatter, Parser

__all__ = ["build_parser", "main", "UsageError"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vidmem", description="Render long videos with diffusers video pipelines "
                    "on small GPUs and CPUs: tiled streaming decode straight to MP4.",
                    epilog=cmd_render.EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    cmd_render.add_parser(sub)
    cmd_plan.add_parser(sub)
    cmd_decode.add_parser(sub)
    return parser


def _one_line_warnings(message: Warning | str, category: type, filename: str, lineno: int,
                       file: Any = None, line: str | None = None) -> None:
    """Python warnings as one ``vidmem: warning: ...`` line, not a source excerpt."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"vidmem: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(f"vidmem {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="vidmem: %(message)s")
    warnings.showwarning = _one_line_warnings
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.handler(args)
    except KeyboardInterrupt as e:
        return report_error(e)
    except Exception as e:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if os.environ.get("VIDMEM_DEBUG") and not isinstance(e, UsageError):
            raise
        return report_error(e)


if __name__ == "__main__":
    sys.exit(main())
