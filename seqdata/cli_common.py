"""What both command-line tools share: a parser whose errors are one line, argument
types, and running a command so that a user's mistake is one line and exit status 2.

Library errors speak of arguments (``overwrite=True``, ``epochs=3``); `run_command`
words them as the command's flags (``--overwrite``, ``--epochs 3``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from seqdata.errors import SeqdataError

EXIT_OK, EXIT_DAMAGED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argument type: an integer in ``low..high`` (``high`` None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {value}")
        return value
    return parse


def finite_float(text: str) -> float:
    """An argument type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argument type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([KMGT]?)B?", re.IGNORECASE)


def byte_size(text: str) -> int:
    """An argument type: a number of bytes, with an optional decimal unit (as
    `seqdata.progress.format_bytes` prints them): ``0``, ``500M``, ``1.5GB``, ``2T``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M, 20G or 0, got "
                                         f"{text!r}")
    number, unit = match.groups()
    return int(float(number) * 1000 ** ("KMGT".find(unit.upper()) + 1 if unit else 0))


def int_list(low: int | None = None) -> Callable[[str], tuple[int, ...]]:
    """An argument type: comma-separated integers such as ``20,40,99`` (each >= ``low``)."""
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers like 20,40,99, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
        if low is not None and min(values) < low:
            raise argparse.ArgumentTypeError(f"expected integers >= {low}, got {text!r}")
        return values
    return parse


_ARGUMENT = re.compile(r"\b([a-z][a-z0-9_]*)=(\S+?)(?=[\s;,)]|$)")


def flag_wording(message: str, flags: set[str]) -> str:
    """``message`` with each ``name=value`` of a known flag written as the flag:
    ``name=True`` as ``--name``, others as ``--name value``.

    >>> flag_wording("pass overwrite=True or epochs=3", {"--overwrite", "--epochs"})
    'pass --overwrite or --epochs 3'
    """
    def word(match: re.Match[str]) -> str:
        flag = "--" + match.group(1).replace("_", "-")
        if flag not in flags:
            return match.group(0)
        return flag if match.group(2) == "True" else f"{flag} {match.group(2)}"
    return _ARGUMENT.sub(word, message)


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and its sub-commands."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
    return flags


def run_command(args: argparse.Namespace, prog: str, parser: argparse.ArgumentParser,
                errors: tuple[type[BaseException], ...] = (SeqdataError,),
                interrupted_hint: str = "") -> int:
    """Run a parsed command; a user error becomes one line on stderr and exit status 2.

    OS errors (a file that cannot be read or written) count as user errors too.
    """
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader of stdout went away (`... | head`): not an error of ours. Point stdout
        # at /dev/null so that flushing it at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (*errors, OSError) as e:
        message = str(e)
        if isinstance(e, OSError) and not isinstance(e, SeqdataError):
            message = f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e)
        message = flag_wording(" ".join(message.split()), parser_flags(parser))
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{interrupted_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
