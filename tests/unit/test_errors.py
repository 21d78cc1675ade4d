"""One error family (routemq.errors): every error RouteMQ raises on purpose is a RouteMQError,
the old names still import from where they were, and the exit status is mapped in one place."""
import pytest

from routemq import errors
from routemq.errors import (EXIT_CONFIG, EXIT_FAILURE, RouteError, RouteMQError, exit_code)
from routemq.plan import Plan
from routemq.router import Router


def test_every_error_is_a_routemq_error_with_an_exit_status():
    classes = [getattr(errors, name) for name in errors.__all__ if name.endswith("Error")]
    assert len(classes) == 11
    for cls in classes:
        assert issubclass(cls, RouteMQError), cls
    assert {cls.__name__ for cls in classes if cls.exit_code == EXIT_CONFIG} == {
        "ConfigError", "RegistryError"}
    assert exit_code(errors.MasterError("x")) == EXIT_FAILURE
    assert exit_code(errors.ConfigError("x")) == EXIT_CONFIG
    assert exit_code(KeyError("x")) == EXIT_FAILURE


def test_the_old_names_still_import_from_their_modules():
    from routemq.config import ConfigError
    from routemq.embedded import EmbeddedBrokerError
    from routemq.master import MasterError
    from routemq.plan import PlanError
    from routemq.registry import RegistryError
    from routemq.router import NoRouteError
    assert (ConfigError, EmbeddedBrokerError, MasterError, PlanError, RegistryError,
            NoRouteError) == (errors.ConfigError, errors.EmbeddedBrokerError,
                              errors.MasterError, errors.PlanError, errors.RegistryError,
                              errors.NoRouteError)


@pytest.mark.parametrize("register", [
    lambda r: r.on("a/#/b", print),                 # bad pattern (raised by routemq.topics)
    lambda r: r.on("a", "not callable"),
    lambda r: r.on("a", print, qos=3),
    lambda r: r.on("a", print, shared=True, worker_count=0),
    lambda r: (r.on("a/{x}", print), r.on("a/{y}", print)),  # same filter twice
])
def test_a_route_that_cannot_be_registered_is_a_route_error_and_a_value_error(register):
    """Applications and RouteMQ's own tests catch ValueError around router.on()."""
    with pytest.raises(RouteError) as err:
        register(Router())
    assert isinstance(err.value, ValueError) and "'a" in str(err.value)


def test_a_bad_plan_document_is_a_plan_error_and_a_value_error():
    with pytest.raises(errors.PlanError) as err:
        Plan.from_json("{")
    assert isinstance(err.value, ValueError)
