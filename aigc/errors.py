"""How a stage ends on an expected error: one line on stderr, a non-zero exit, no traceback.

Expected errors are the ones a user causes and can fix, each with a one-line message:

    ParamsError                    a bad value in params.yaml               exit 2
    OSError                        a missing, unreadable or unwritable file  exit 1
    the errors a stage names       SourceError, CheckpointError, ...         exit 1

Anything else is a bug in the code and keeps its traceback. Every stage wraps its work in
`exit_on_error`, naming the library errors that work can raise:

    with exit_on_error(CheckpointError):
        model, checkpoint = load_model(args.checkpoint)

When the named errors of a block can only mean that one setting has a bad value (a params key
or a command-line flag), `setting` says which: the line names it and the exit status is 2, as
for any bad setting (argparse also exits 2 on a bad flag):

    with exit_on_error(ValueError, setting="--classes"):  # a class the model does not have
        wanted = class_indices(args.classes, classes, model)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from aigc.params import ParamsError

__all__ = ["Rejected", "exit_on_error", "one_line"]

SETTING_EXIT = 2  # a bad value in params.yaml or on the command line: fix the setting
ERROR_EXIT = 1  # anything else expected: a missing input, a corrupt checkpoint, ...


class Rejected(Exception):
    """An item the cleaner turns away (an image that cannot be one, a text that must not be):
    `reason` is a short key for rejected.csv, `detail` a sentence."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@contextlib.contextmanager
def exit_on_error(*expected: type[Exception], setting: str = "") -> Iterator[None]:
    """Turn ParamsError, OSError and the `expected` errors into one line on stderr and an exit."""
    try:
        yield
    except ParamsError as error:
        print(f"error: params.yaml: {one_line(error)}", file=sys.stderr)
        raise SystemExit(SETTING_EXIT) from None
    except OSError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(ERROR_EXIT) from None
    except expected as error:
        if not setting:
            print(f"error: {one_line(error)}", file=sys.stderr)
            raise SystemExit(ERROR_EXIT) from None
        where = setting if setting.startswith("-") else f"params.yaml: {setting}"
        print(f"error: {where}: {one_line(error)}", file=sys.stderr)
        raise SystemExit(SETTING_EXIT) from None


def one_line(error: BaseException) -> str:
    """An error's message on one line; a file error as `PATH: reason`."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror[0].lower()}{error.strerror[1:]}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())
