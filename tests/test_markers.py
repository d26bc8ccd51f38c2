"""The slow-test list in conftest.py names tests that exist, so a rename cannot leak a slow test into
``make test-unit``."""

import pathlib

import pytest
from conftest import SLOW_TESTS

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("node", sorted(SLOW_TESTS))
def test_listed_slow_test_exists(node):
    path, name = node.split("::")
    source = REPO / path
    assert source.is_file(), f"{path} (listed in tests/conftest.py SLOW_TESTS) does not exist"
    assert f"def {name}(" in source.read_text(encoding="utf-8"), f"{node} is listed as slow but not defined"
