"""Routes, groups, middleware and dispatch (routemq.router)."""
import asyncio

import pytest

from routemq.middleware import Middleware
from routemq.payload import decode_payload
from routemq.router import NoRouteError, Route, Router


def run(coro):
    return asyncio.run(coro)


class Recorder:
    """A handler that records its calls (sync or async)."""

    def __init__(self, result=None):
        self.calls = []
        self.result = result

    async def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.result


# --- the unit tests of RouteMQ's shared-subscriptions guide, against our API ------------
# (WorkerManager.get_shared_routes_info versions of these live with the WorkerManager tests)

def test_guide_shared_route_identification_on_router():
    router = Router()
    router.on("regular/route", Recorder(), shared=False)
    router.on("shared/route", Recorder(), shared=True, worker_count=3)
    router.on("another/shared", Recorder(), shared=True, worker_count=5)
    shared = router.shared_routes()
    assert len(shared) == 2
    topics = [r.topic for r in shared]
    assert "shared/route" in topics and "another/shared" in topics
    assert "regular/route" not in topics


def test_guide_worker_count_calculation():
    router = Router()
    router.on("high/load", Recorder(), shared=True, worker_count=8)
    router.on("medium/load", Recorder(), shared=True, worker_count=4)
    assert sum(r.worker_count for r in router.shared_routes()) == 12
    assert router.get_total_workers_needed() == 8


def test_guide_shared_subscription_topic_format():
    route = Route("sensors/{device_id}/data", Recorder(), shared=True)
    assert route.get_subscription_topic() == "sensors/+/data"
    assert route.get_subscription_topic("test_group") == "$share/test_group/sensors/+/data"


# --- routes --------------------------------------------------------------------------------

def test_not_shared_route_has_one_worker_and_no_share_prefix():
    route = Route("alerts/{id}", Recorder(), worker_count=4)
    assert route.worker_count == 1
    assert route.get_subscription_topic("g") == "alerts/+"
    assert route.key == "single:alerts/{id}"
    assert Route("a", Recorder(), shared=True).key == "shared:a"


def test_route_matches():
    route = Route("sensors/{device_id}/data", Recorder())
    assert route.matches("sensors/abc/data") == {"device_id": "abc"}
    assert route.matches("sensors/abc") is None


@pytest.mark.parametrize("kwargs, message", [
    ({"qos": 3}, "qos must be 0, 1 or 2, got 3"),
    ({"qos": -1}, "qos must be 0, 1 or 2, got -1"),
    ({"qos": "1"}, "qos must be 0, 1 or 2, got '1'"),
    ({"worker_count": 0, "shared": True}, "worker_count must be an integer >= 1, got 0"),
    ({"worker_count": 2.5, "shared": True}, "worker_count must be an integer >= 1, got 2.5"),
])
def test_bad_route_arguments_are_rejected_with_the_pattern(kwargs, message):
    with pytest.raises(ValueError) as err:
        Router().on("a/{b}", Recorder(), **kwargs)
    assert "'a/{b}'" in str(err.value) and message in str(err.value)


def test_bad_pattern_rejected_at_registration():
    with pytest.raises(ValueError, match=r"invalid route pattern 'a/#/b'"):
        Router().on("a/#/b", Recorder())


def test_handler_must_be_callable():
    with pytest.raises(ValueError, match="not callable"):
        Router().on("a", "not a function")


def test_duplicate_filter_is_rejected():
    router = Router()
    router.on("a/{x}", Recorder())
    with pytest.raises(ValueError, match=r"route 'a/{y}' duplicates route 'a/{x}'"):
        router.on("a/{y}", Recorder())
    router.on("a/{y}", Recorder(), shared=True)  # shared + single on one filter is allowed


def test_bad_middleware_rejected_at_registration():
    with pytest.raises(TypeError, match="has no handle"):
        Router().on("a", Recorder(), middleware=[object()])


# --- dispatch ------------------------------------------------------------------------------

def test_dispatch_calls_handler_with_params_payload_client():
    handler = Recorder(result="done")
    router = Router()
    router.on("sensors/{device_id}/data", handler)
    client = object()
    assert run(router.dispatch("sensors/7/data", {"t": 1}, client)) == "done"
    assert handler.calls == [{"device_id": "7", "payload": {"t": 1}, "client": client}]


def test_dispatch_sync_handler():
    calls = []
    router = Router()
    router.on("a/{x}", lambda x, payload, client: calls.append((x, payload)) or "sync")
    assert run(router.dispatch("a/1", b"raw", None)) == "sync"
    assert calls == [("1", b"raw")]


def test_dispatch_without_route_raises_clear_error():
    router = Router()
    router.on("a", Recorder())
    with pytest.raises(NoRouteError, match="No route found for topic: b/c"):
        run(router.dispatch("b/c", None, None))
    with pytest.raises(ValueError):  # RouteMQ raises ValueError
        run(router.dispatch("b/c", None, None))


def test_dispatch_picks_most_specific_route():
    specific, generic = Recorder("specific"), Recorder("generic")
    router = Router()
    router.on("sensors/#", generic)
    router.on("sensors/{id}/data", specific)
    assert run(router.dispatch("sensors/1/data", None, None)) == "specific"
    assert run(router.dispatch("sensors/1/other", None, None)) == "generic"


def test_match_in_restricts_to_held_routes():
    router = Router()
    a = router.on("s/{id}", Recorder())
    b = router.on("s/#", Recorder(), shared=True)
    assert router.match_in("s/1", [b])[0] is b
    assert router.match_in("s/1", [a, b])[0] is a
    assert router.match_in("s/1", []) is None


class Tag(Middleware):
    def __init__(self, name, log):
        self.name, self.log = name, log

    async def handle(self, context, next_handler):
        self.log.append(f"{self.name}>")
        context["payload"] = context["payload"] + [self.name]
        result = await next_handler(context)
        self.log.append(f"<{self.name}")
        return result


def test_middleware_chain_order_context_and_result():
    log, handler = [], Recorder("r")
    router = Router()

    async def fn_middleware(context, next_handler):
        assert set(context) >= {"topic", "payload", "params", "client"}
        log.append("fn")
        return await next_handler(context)

    with router.group(prefix="devices", middleware=[Tag("group", log)]) as g:
        g.on("{device_id}/cmd", handler, middleware=[Tag("route", log), fn_middleware])
    assert run(router.dispatch("devices/9/cmd", [], "C")) == "r"
    assert log == ["group>", "route>", "fn", "<route", "<group"]
    assert handler.calls == [{"device_id": "9", "payload": ["group", "route"], "client": "C"}]


def test_middleware_can_short_circuit():
    class Deny(Middleware):
        async def handle(self, context, next_handler):
            return "denied"

    handler = Recorder()
    router = Router()
    router.on("a", handler, middleware=[Deny()])
    assert run(router.dispatch("a", None, None)) == "denied"
    assert handler.calls == []


def test_handler_exception_propagates_through_middleware():
    log = []

    async def boom(payload, client):
        raise RuntimeError("handler failed")

    router = Router()
    router.on("a", boom, middleware=[Tag("m", log)])
    with pytest.raises(RuntimeError, match="handler failed"):
        run(router.dispatch("a", [], None))
    assert log == ["m>"]


def test_groups_nest_and_decorator_registers():
    router = Router()
    outer = router.group(prefix="site/")
    inner = outer.group(prefix="{site_id}/dev")
    inner.on("{device_id}", Recorder())

    @router.on("deco/{x}", qos=1)
    async def handler(x, payload, client):
        return x

    assert [r.topic for r in router.routes] == ["site/{site_id}/dev/{device_id}", "deco/{x}"]
    assert run(router.dispatch("deco/5", None, None)) == "5"
    assert router.routes[1].qos == 1


def test_include_merges_routers():
    a, b = Router(), Router()
    a.on("x", Recorder())
    b.on("y", Recorder())
    a.include(b)
    assert [r.topic for r in a.routes] == ["x", "y"]


def test_describe():
    route = Route("s/{id}", Recorder(), qos=1, shared=True, worker_count=3)
    d = route.describe("workers")
    assert d["subscription"] == "$share/workers/s/+"
    assert (d["qos"], d["shared"], d["worker_count"]) == (1, True, 3)
    assert d["handler"].endswith("Recorder")


# --- payload -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, decoded", [
    (b'{"value": 21.5}', {"value": 21.5}),
    (b"[1, 2]", [1, 2]),
    (b"42", 42),
    (b"not json", b"not json"),
    (b"\xff\xfe\x00garbage", b"\xff\xfe\x00garbage"),
    (b"", b""),
])
def test_decode_payload(raw, decoded):
    assert decode_payload(raw) == decoded
