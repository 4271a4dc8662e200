"""How the binaries stop on an error: one line that names the problem, and a way back to
the traceback for the engineer who needs it.

The library states bad input (an unknown game, op or preset, a malformed genotype, a
mismatched checkpoint, a NaN loss) as a ValueError or one of its own errors whose text is
the whole story: the binaries print it as ``error: ...`` and exit non-zero. Any other
ValueError (raised inside JAX, NumPy, Flax, ... or by a call of ours into one of them) is
more likely a bug than bad input, and one line alone would hide where it came from: the
line then names the file and line that raised it and how to get the full traceback
(``RLDARTS_TRACEBACK=1``).
"""

from __future__ import annotations

import linecache
import os
import sys

TRACEBACK_ENV = "RLDARTS_TRACEBACK"
# Exit statuses of the binaries that the sweep engines act on (launch/engines.py).
# A refusal (bad input, a checkpoint of another config, a NaN loss) fails the same way
# every time: never retried. 2 is a command line that does not parse (absl, ours).
EXIT_USAGE = 2
EXIT_REFUSED = 65  # sysexits' EX_DATAERR
# Another live attempt holds the workdir (rldarts/run/run_lifecycle.py): wait, then retry.
EXIT_LOCKED = 75  # sysexits' EX_TEMPFAIL
DETERMINISTIC_EXITS = (EXIT_USAGE, EXIT_REFUSED)
# Top-level folders of this repository whose raise statements are deliberate messages.
OUR_PACKAGES = ("rldarts", "experiments", "launch")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def raised_at(error: BaseException) -> tuple[str, int] | None:
    """(file, line) of the frame that raised `error`, None when it has no traceback."""
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def raised_by_us(error: BaseException) -> bool:
    """Whether `error` comes from a `raise` statement of this repository's packages (not
    from a library, nor from a C function such as ndarray.reshape that our code called)."""
    where = raised_at(error)
    if where is None:
        return True
    file, line = where
    path = os.path.abspath(file)
    ours = any(path.startswith(os.path.join(_ROOT, pkg) + os.sep) for pkg in OUR_PACKAGES)
    return ours and linecache.getline(file, line).lstrip().startswith("raise")


def message(error: BaseException) -> str:
    """The one line a binary prints for `error`."""
    text = " ".join(str(error).split()) or type(error).__name__
    if raised_by_us(error):
        return f"error: {text}"
    file, line = raised_at(error)
    return (
        f"error: {type(error).__name__}: {text} (raised in {file}:{line}; "
        f"{TRACEBACK_ENV}=1 shows the traceback)"
    )


def exit_with(error: BaseException, code: int = 1) -> None:
    """Stop the binary on `error`: one line on stderr and exit `code`, or with
    RLDARTS_TRACEBACK=1 in the environment, the error itself with its traceback."""
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        raise error
    sys.stderr.write(message(error) + "\n")
    sys.exit(code)
