"""One exception root (issue #28): every exception vidmem raises to a caller derives from
``vidmem.VidmemError`` (with its builtin as a second base), every public class is exported, and
the command line picks its exit status from the class, not from a builtin type."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import vidmem
from vidmem import errors
from vidmem.cli import main
from vidmem.cli.errors import EXIT_STATUS, UsageError, exit_status

#: exceptions defined in vidmem that never reach a caller (control flow inside the decode).
INTERNAL = {"vidmem.decode.clip_norm.StopDecode"}


def _vidmem_modules():
    for info in pkgutil.walk_packages(vidmem.__path__, "vidmem."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def test_every_exception_class_of_vidmem_is_under_the_root_and_exported():
    found = {}
    for module in _vidmem_modules():
        for name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, BaseException)
                    and cls.__module__.startswith("vidmem")):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    public = set(errors.PUBLIC_ERRORS)
    for qualname, cls in found.items():
        if qualname in INTERNAL or cls is UsageError:
            continue
        assert cls in public, f"{qualname} is not in vidmem.errors.PUBLIC_ERRORS"
    for cls in public:
        assert getattr(vidmem, cls.__name__) is cls and cls.__name__ in vidmem.__all__
        if cls is errors.DecodeInterrupted:  # Ctrl-C stays a KeyboardInterrupt
            assert issubclass(cls, KeyboardInterrupt) and not issubclass(cls, Exception)
            assert issubclass(cls, errors.IncompleteVideo)
        else:
            assert issubclass(cls, errors.VidmemError)
    assert issubclass(UsageError, errors.InvalidOptions)


@pytest.mark.parametrize("cls, builtin", [
    (errors.InvalidOptions, ValueError), (errors.InvalidInputType, TypeError),
    (errors.OutputDirectoryMissing, FileNotFoundError), (errors.OutputInUse, OSError),
    (errors.CheckpointMissing, FileNotFoundError), (errors.CheckpointDamaged, ValueError),
    (errors.WriterError, RuntimeError), (errors.RankFailed, RuntimeError),
    (errors.ModelNotFound, OSError),
])
def test_each_error_is_also_the_builtin_it_stands_for(cls, builtin):
    assert issubclass(cls, builtin) and issubclass(cls, errors.VidmemError)


def test_exit_status_comes_from_the_class():
    """2 for anything the user can fix, 1 for a failure of the run and for anything that is not
    vidmem's (a library bug raising ValueError is not "your input"), 130 for Ctrl-C."""
    for cls in (errors.InvalidOptions, errors.InvalidInput, errors.UnsupportedModel,
                errors.ModelNotFound, errors.BudgetTooSmall, errors.OutputExists,
                errors.CheckpointDamaged, errors.PromptsFileError, UsageError):
        assert exit_status(cls("x")) == 2, cls
    for error in (errors.DecodeFailed("x"), errors.WriterError("x"), errors.RankFailed([]),
                  errors.GroupBroken("x"), ValueError("x"), OSError("x"), RuntimeError("x")):
        assert exit_status(error) == 1, error
    assert exit_status(errors.DecodeInterrupted("x")) == 130
    assert exit_status(KeyboardInterrupt()) == 130
    assert set(EXIT_STATUS) <= set(errors.PUBLIC_ERRORS)


def test_a_library_bug_reads_as_a_failure_not_as_bad_input(monkeypatch, capsys):
    """The CLI's one line names the builtin type of an error vidmem did not raise on purpose,
    and exits 1; a vidmem refusal is `vidmem: error: ...` and exits 2."""
    import vidmem.cli.cmd_plan as cmd_plan

    def broken(args):
        raise ValueError("index out of range in a helper")

    monkeypatch.setattr(cmd_plan, "run", broken)
    assert main(["plan", "--budget", "1GiB"]) == 1
    assert capsys.readouterr().err.strip() == "vidmem: ValueError: index out of range in a helper"

    def refused(args):
        raise errors.InvalidOptions("--tile-size 3 is below the minimum")

    monkeypatch.setattr(cmd_plan, "run", refused)
    assert main(["plan", "--budget", "1GiB"]) == 2
    assert capsys.readouterr().err.strip() == "vidmem: error: --tile-size 3 is below the minimum"
