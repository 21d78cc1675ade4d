"""Routes, route groups and the router that dispatches a topic to its handler.

The API is RouteMQ's, so a RouteMQ application's routers run unchanged:

    router = Router()
    router.on("alerts/{device_id}", SensorController.handle_alert)
    router.on("sensors/{device_id}/data", SensorController.process_data,
              shared=True, worker_count=3, qos=1)
    with router.group(prefix="devices", middleware=[AuthMiddleware()]) as devices:
        devices.on("{device_id}/commands", DeviceController.execute_command, qos=2)

    await router.dispatch("sensors/42/data", {"t": 21}, client)
    # -> await SensorController.process_data(device_id="42", payload={"t": 21}, client=client)
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Container, Sequence

from routemq.errors import NoRouteError, RouteError
from routemq.message import Message
from routemq.middleware import Context, as_callable
from routemq.retries import DEFAULTS as RETRY_DEFAULTS, RetryPolicy, retry_policy
from routemq.topics import TopicPattern, TopicTree, parse_pattern

Handler = Callable[..., Any]

# The keywords a handler is called with besides its route parameters.
RESERVED_PARAMS = ("payload", "client", "message")


def declares_message(handler: Handler) -> bool:
    """Whether `handler` has a parameter named `message` (by name or keyword-only)."""
    try:
        parameter = inspect.signature(handler).parameters.get("message")
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


async def _call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a sync or async callable and return its (awaited) result."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class Route:
    """One pattern, its handler and how it is subscribed (qos, shared, worker_count)."""

    def __init__(self, topic: str, handler: Handler, qos: int = 0,
                 middleware: Sequence[Any] | None = None, shared: bool = False,
                 worker_count: int = 1, *, max_inflight: int | None = None,
                 timeout: float | None = None, retries: int = 0, retry_backoff: float = 1.0,
                 retry_backoff_max: float = 60.0) -> None:
        try:
            self.parsed: TopicPattern = parse_pattern(topic)
        except ValueError as exc:
            raise RouteError(str(exc)) from None
        reserved = [n for n in self.parsed.param_names if n in RESERVED_PARAMS]
        if reserved:
            # topics.py refuses payload and client already, with these words
            raise RouteError(f"invalid route pattern {topic!r}: parameter name "
                             f"{reserved[0]!r} is reserved (handlers receive it)")
        if not callable(handler):
            raise RouteError(f"route {topic!r}: handler {handler!r} is not callable")
        if isinstance(qos, bool) or qos not in (0, 1, 2):
            raise RouteError(f"route {topic!r}: qos must be 0, 1 or 2, got {qos!r}")
        if isinstance(worker_count, bool) or not isinstance(worker_count, int) \
                or worker_count < 1:
            raise RouteError(f"route {topic!r}: worker_count must be an integer >= 1, "
                             f"got {worker_count!r}")
        if max_inflight is not None and (isinstance(max_inflight, bool) or not isinstance(
                max_inflight, int) or max_inflight < 1):
            raise RouteError(f"route {topic!r}: max_inflight must be an integer >= 1 or None, "
                             f"got {max_inflight!r}")
        if max_inflight is not None and max_inflight > 1 and not shared:
            raise RouteError(f"route {topic!r}: max_inflight={max_inflight} on a route that is "
                             "not shared: such a route runs one message at a time, in order")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or not 0 <= timeout <= 86400):
            raise RouteError(f"route {topic!r}: timeout must be a number of seconds between 0 "
                             f"and 86400 (0 = none) or None, got {timeout!r}")
        # How a failed message is run again (routemq.retries); checked here, at registration
        self.retry: RetryPolicy = retry_policy(topic, retries, retry_backoff,
                                               retry_backoff_max)
        self.topic = topic
        self.handler = handler
        self.qos = qos
        # Per-route overrides of the worker's max_inflight and handler_timeout (None: the
        # worker's). The dispatcher reads them for every message: plain attributes.
        self.max_inflight = max_inflight if shared else None  # not shared: 1, in order
        self.timeout = None if timeout is None else float(timeout)
        self.middleware = list(middleware or [])
        # Resolved once (this also fails at registration, not on the first message): the
        # per-message chain then allocates nothing but the context.
        self._handles = [as_callable(m) for m in self.middleware]
        self._nexts = [functools.partial(self._chain, i + 1)
                       for i in range(len(self.middleware))]
        # A coroutine function is awaited directly; anything else goes through _call.
        self._direct = inspect.iscoroutinefunction(handler)
        # Decided once: a handler declaring `message` gets the Message; with middleware the
        # context carries it. The dispatcher builds one only where `uses_message` is true.
        self.wants_message = declares_message(handler)
        self.uses_message = self.wants_message or bool(self._handles)
        # The dispatcher's shortcut: a coroutine handler it may await itself, with nothing
        # in between (no middleware, no Message).
        self.plain = self._direct and not self._handles and not self.wants_message
        self.shared = bool(shared)
        # As in RouteMQ: a route that is not shared runs on exactly one worker.
        self.worker_count = worker_count if self.shared else 1
        self.mqtt_topic = self.parsed.mqtt_filter
        # Identity used by the plan: the pattern, prefixed by how it is subscribed. Kept as
        # an attribute: the dispatcher reads it for every message.
        self.key = f"{'shared' if self.shared else 'single'}:{self.topic}"

    @property
    def handler_name(self) -> str:
        h = self.handler
        module = getattr(h, "__module__", None) or type(h).__module__
        name = getattr(h, "__qualname__", None) or type(h).__qualname__
        return f"{module}.{name}"

    def matches(self, topic: str) -> dict[str, str] | None:
        """The parameters if `topic` matches this route, else None."""
        return self.parsed.match(topic)

    def get_subscription_topic(self, group_name: str | None = None) -> str:
        """`sensors/+/data`, or `$share/<group>/sensors/+/data` for a shared route and a group."""
        if self.shared and group_name:
            return f"$share/{group_name}/{self.mqtt_topic}"
        return self.mqtt_topic

    async def call(self, topic: str, payload: Any, client: Any,
                   params: dict[str, str], message: Message | None = None) -> Any:
        """Run the middleware chain and the handler for one message. `message` is needed
        only where `uses_message` (one is made from the rest when not given)."""
        if not self._handles:  # the common case: no context dict, no chain
            if self.wants_message:
                if message is None:
                    message = Message.build(topic, payload, params=params, client=client)
                if self._direct:
                    return await self.handler(**params, payload=payload, client=client,
                                              message=message)
                return await _call(self.handler, **params, payload=payload, client=client,
                                   message=message)
            if self._direct:
                return await self.handler(**params, payload=payload, client=client)
            return await _call(self.handler, **params, payload=payload, client=client)
        if message is None:
            message = Message.build(topic, payload, params=params, client=client)
        # Its own params: middleware may change the context, and the dispatcher shares one
        # params dict among the messages of a topic.
        context: Context = {"topic": topic, "payload": payload, "params": dict(params),
                            "client": client, "route": self, "route_pattern": self.topic,
                            "message": message}
        return await self._chain(0, context)

    async def _chain(self, index: int, context: Context) -> Any:
        if index == len(self._handles):
            if self.wants_message:
                return await _call(self.handler, **context["params"],
                                   payload=context["payload"], client=context["client"],
                                   message=context["message"])
            return await _call(self.handler, **context["params"],
                               payload=context["payload"], client=context["client"])
        return await _call(self._handles[index], context, self._nexts[index])

    def describe(self, group_name: str | None = None) -> dict[str, Any]:
        """The route as plain data (for `routemq routes --json`)."""
        return {
            "topic": self.topic,
            "mqtt_topic": self.mqtt_topic,
            "subscription": self.get_subscription_topic(group_name),
            "qos": self.qos,
            "shared": self.shared,
            "worker_count": self.worker_count,
            "max_inflight": self.max_inflight,
            "timeout": self.timeout,
            "retries": self.retry.retries,
            "retry_backoff": self.retry.backoff,
            "retry_backoff_max": self.retry.backoff_max,
            "handler": self.handler_name,
            "middleware": [type(m).__name__ if hasattr(m, "handle") else
                           getattr(m, "__qualname__", repr(m)) for m in self.middleware],
        }

    def __repr__(self) -> str:
        return (f"Route({self.topic!r}, qos={self.qos}, shared={self.shared}, "
                f"worker_count={self.worker_count})")


def _group_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """A group's retry defaults, checked now (a typo must not pass silently)."""
    unknown = sorted(set(defaults) - set(RETRY_DEFAULTS))
    if unknown:
        raise RouteError(f"router.group() got unknown keyword {unknown[0]!r}: a group gives "
                         f"its routes defaults for {', '.join(RETRY_DEFAULTS)}")
    given = {k: v for k, v in defaults.items() if v is not None}
    try:
        retry_policy("", **{**RETRY_DEFAULTS, **given})
    except RouteError as exc:
        detail = str(exc).removeprefix("route '': ")
        raise RouteError(f"router.group(): {detail}") from None
    return given


class RouterGroup:
    """Routes sharing a topic prefix, middleware and retry defaults (`retries`,
    `retry_backoff`, `retry_backoff_max`: a route's own keywords win); usable as a context
    manager."""

    def __init__(self, router: Router, prefix: str = "",
                 middleware: Sequence[Any] | None = None,
                 defaults: dict[str, Any] | None = None) -> None:
        self.router = router
        self.prefix = prefix.strip("/") if prefix else ""
        self.middleware = list(middleware or [])
        self.defaults = dict(defaults or {})

    def _full(self, topic: str) -> str:
        return f"{self.prefix}/{topic}" if self.prefix else topic

    def on(self, topic: str, handler: Handler | None = None, qos: int = 0,
           middleware: Sequence[Any] | None = None, shared: bool = False,
           worker_count: int = 1, **limits: Any) -> Any:
        """Register a route below this group's prefix, after the group's middleware, with
        the group's retry defaults where the route gives none."""
        given = {k: v for k, v in limits.items() if v is not None}
        return self.router.on(self._full(topic), handler, qos,
                              self.middleware + list(middleware or []), shared, worker_count,
                              **{**self.defaults, **given})

    def group(self, prefix: str = "", middleware: Sequence[Any] | None = None,
              **defaults: Any) -> RouterGroup:
        """A nested group: prefixes join with '/', middleware lists concatenate, retry
        defaults are the outer group's overridden by those given here."""
        return RouterGroup(self.router, self._full(prefix.strip("/")) if prefix else self.prefix,
                           self.middleware + list(middleware or []),
                           {**self.defaults, **_group_defaults(defaults)})

    def __enter__(self) -> RouterGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Router:
    """The routes of an application and the topic tree that finds them."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._tree: TopicTree[Route] = TopicTree()
        self._keys: set[tuple[str, bool]] = set()

    def on(self, topic: str, handler: Handler | None = None, qos: int = 0,
           middleware: Sequence[Any] | None = None, shared: bool = False,
           worker_count: int = 1, *, max_inflight: int | None = None,
           timeout: float | None = None, retries: int | None = None,
           retry_backoff: float | None = None, retry_backoff_max: float | None = None) -> Any:
        """Register a route and return it. Without a handler, return a decorator:

            @router.on("sensors/{device_id}/data", shared=True, worker_count=3)
            async def process(device_id, payload, client): ...

        `max_inflight` and `timeout` override the worker's `max_inflight` (for a shared route)
        and `handler_timeout` for this route only: a slow external API gets its own limits.
        `retries` more attempts follow a failure, `retry_backoff` seconds after the first,
        doubling up to `retry_backoff_max` (routemq.retries); None: the default (no retry).
        """
        limits = dict(max_inflight=max_inflight, timeout=timeout, retries=retries,
                      retry_backoff=retry_backoff, retry_backoff_max=retry_backoff_max)
        if handler is None:
            def decorate(func: Handler) -> Handler:
                self.on(topic, func, qos, middleware, shared, worker_count, **limits)
                return func
            return decorate
        retry = {k: RETRY_DEFAULTS[k] if limits[k] is None else limits[k]
                 for k in RETRY_DEFAULTS}
        return self.add_route(Route(topic, handler, qos, middleware, shared, worker_count,
                                    max_inflight=max_inflight, timeout=timeout, **retry))

    def add_route(self, route: Route) -> Route:
        """Add a built route; two routes with the same MQTT filter and sharing are an error
        (the broker keeps one subscription per filter, so the second could never run)."""
        key = (route.mqtt_topic, route.shared)
        if key in self._keys:
            other = next(r for r in self.routes if (r.mqtt_topic, r.shared) == key)
            raise RouteError(
                f"route {route.topic!r} duplicates route {other.topic!r}: both subscribe to "
                f"{route.mqtt_topic!r} ({'shared' if route.shared else 'not shared'})")
        self._keys.add(key)
        self.routes.append(route)
        self._tree.add(route.parsed, route)
        return route

    def include(self, other: Router) -> None:
        """Add every route of `other` (used to merge the routers of several modules)."""
        for route in other.routes:
            self.add_route(route)

    def group(self, prefix: str = "", middleware: Sequence[Any] | None = None,
              **defaults: Any) -> RouterGroup:
        """A group of routes with a shared prefix and middleware, and retry defaults for
        them (`retries`, `retry_backoff`, `retry_backoff_max`):

            with router.group(prefix="billing", retries=5, retry_backoff=2.0) as billing:
                billing.on("invoices/{id}", store_invoice)  # 5 retries: 2, 4, 8, 16, 32 s
        """
        return RouterGroup(self, prefix, middleware, _group_defaults(defaults))

    def match(self, topic: str) -> tuple[Route, dict[str, str]] | None:
        """The most specific route for `topic` and its parameters, or None."""
        return self._tree.best(topic)

    def match_in(self, topic: str, routes: Container[Route]) -> tuple[Route, dict[str, str]] | None:
        """The most specific route for `topic` among `routes` (those a worker holds; pass a
        set, it is asked once per candidate)."""
        return self._tree.best(topic, routes.__contains__)

    async def dispatch(self, topic: str, payload: Any, client: Any) -> Any:
        """Call the handler of the most specific route for `topic` through its middleware."""
        found = self._tree.best(topic)
        if found is None:
            raise NoRouteError(topic)
        route, params = found
        return await route.call(topic, payload, client, params)

    def shared_routes(self) -> list[Route]:
        return [r for r in self.routes if r.shared]

    def get_total_workers_needed(self) -> int:
        """The largest worker_count among shared routes (RouteMQ's name; 0 without any)."""
        return max((r.worker_count for r in self.routes if r.shared), default=0)

