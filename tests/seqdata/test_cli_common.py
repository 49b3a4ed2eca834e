"""What both CLIs share: argument types, and library errors worded as flags."""

import argparse

import pytest

from seqdata.cli_common import bounded_int, flag_wording, int_list, parser_flags


def test_int_list_parses_and_bounds():
    assert int_list()("20, 40,99") == (20, 40, 99)
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers"):
        int_list()("20;40")
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):
        int_list(1)("32,0")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one"):
        int_list()(",")


def test_bounded_int():
    assert bounded_int(1, 3)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"in 1\.\.3"):
        bounded_int(1, 3)("4")


def test_library_arguments_are_worded_as_the_commands_flags():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    gen = sub.add_parser("gen")
    gen.add_argument("--overwrite", action="store_true")
    gen.add_argument("--max-timesteps", type=int)
    flags = parser_flags(parser)
    assert {"--overwrite", "--max-timesteps"} <= flags
    assert flag_wording("not empty; pass overwrite=True to replace it", flags) == \
        "not empty; pass --overwrite to replace it"
    assert flag_wording("(give max_timesteps=600 or more)", flags) == \
        "(give --max-timesteps 600 or more)"
    # Names that are no flag of this command stay as they are.
    assert flag_wording("pass resume=True", flags) == "pass resume=True"
