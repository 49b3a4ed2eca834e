"""The ``>>>`` examples of every module of both packages run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.test_layers import package_files

MODULES = [m for m in package_files() if "__main__" not in m]


@pytest.mark.parametrize("name", MODULES)
def test_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
