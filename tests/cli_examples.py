"""The example command lines of the ``vidmem`` subcommands' ``--help``, as printed.

Why a helper: every example in every ``--help`` must run as printed. Tests take the examples
from ``build_parser()`` itself (the epilog each subcommand prints), so an edited example is
tested as edited; a test for another subcommand only needs ``examples("render")`` and a way to
run it (e.g. in a temporary directory, with the files it names).
"""

from __future__ import annotations

import argparse
import shlex


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """``{name: parser}`` of the ``vidmem`` subcommands."""
    from vidmem.cli import build_parser

    parser = build_parser()
    for action in parser._actions:  # argparse exposes subparsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("vidmem has no subcommands")


def examples(subcommand: str) -> list[list[str]]:
    """The example commands in ``vidmem SUBCOMMAND --help`` as argument lists (without the
    leading ``vidmem``): lines starting with ``vidmem`` under a heading that starts with
    "examples", joined across trailing backslashes, with ``# comments`` and their continuation
    lines dropped. Lines under another heading (e.g. "with a real model (downloads it)") are
    illustrations, not runnable examples."""
    epilog = subcommand_parsers()[subcommand].epilog or ""
    commands: list[str] = []
    pending = ""
    runnable = False
    for raw in epilog.splitlines():
        if raw and not raw[0].isspace():  # a heading
            runnable = raw.startswith("examples")
            continue
        if not runnable:
            continue
        line = raw.strip()
        if pending:
            pending += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                commands.append(pending)
                pending = ""
            continue
        if not line.startswith("vidmem "):
            continue
        if line.endswith("\\"):
            pending = line.rstrip("\\").strip()
        else:
            commands.append(line)
    if pending:
        commands.append(pending)
    out = []
    for command in commands:
        argv = shlex.split(command, comments=True)
        assert argv[0] == "vidmem", command
        out.append(argv[1:])
    return out
