"""Runs the example application's own tests (examples/iot/tests, written with TestClient),
so the example and what the README shows of it keep working."""
import importlib.util
from pathlib import Path

import pytest

EXAMPLE_TESTS = Path(__file__).resolve().parents[2] / "examples" / "iot" / "tests" / \
    "test_routes.py"


def _load():
    spec = importlib.util.spec_from_file_location("routemq_example_iot_tests", EXAMPLE_TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULE = _load()
TESTS = sorted(name for name in vars(MODULE) if name.startswith("test_"))


def test_the_example_has_tests():
    assert len(TESTS) >= 5


@pytest.mark.parametrize("name", TESTS)
def test_example(name):
    # The example's own test asserts; returning normally (None) is its passing.
    assert getattr(MODULE, name)() is None
