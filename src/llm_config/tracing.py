"""OpenTelemetry spans for manager operations, cache tiers and storage calls (the `otel` extra).

Off by default, and then nothing here runs: no class is touched, nothing is imported from
OpenTelemetry, and the only cost on a request is one truth test in `carry` and in the access log.
`instrument(manager)` switches it on for one manager — `serve --tracing` does it for the server,
a library user may do it for their own manager — by giving the manager, the callers it makes
(`as_caller`), its L1 and L2 cache tiers and its storage a traced subclass of their own class
(`obj.__class__ = Traced…`: same layout, same `isinstance`, the core keeps no tracing code). Each
traced method opens a span named after it:

- `llm_config.<method>` — a manager or caller operation (`get`, `set`, `peek_record`, `promote`…);
- `cache.l1.get`, `cache.l2.get|fill|tombstone|publish` — a cache tier, with `llm_config.cache.hit`;
- `storage.<method>` — one storage call, with `db.system` (sqlite, postgresql, mysql).

Attributes come from an allow-list of parameter names — namespace, key, environment (canonical),
version, prefix, template or schema name, source and target environment — and the outcome (`ok`, or
the error's class name). A name is recorded before the manager checks it, so anything shaped like an
API key in it is masked. Values, secrets, API keys, audit keys and error messages are never read, so
they cannot reach a span: a wrapper never looks at any other argument, nor at a result beyond "was it
None". Each manager's spans go to the provider it was first instrumented with.

`provider_from_env()` builds the SDK's `TracerProvider` from the standard variables:
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` (`otlp` — the default,
HTTP/protobuf, configured by `OTEL_EXPORTER_OTLP_*` — `console` or `none`), `OTEL_TRACES_SAMPLER`
and `OTEL_BSP_*`; `OTEL_SDK_DISABLED=true` leaves tracing off.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from llm_config.errors import MissingDependencyError, ValidationError
from llm_config.models import Environment

__all__ = [
    "TRACER_NAME",
    "carry",
    "check_env",
    "current_ids",
    "enabled",
    "instrument",
    "mask",
    "provider_from_env",
]

T = TypeVar("T")

TRACER_NAME: Final = "llm_config"
_API_KEY: Final = re.compile(r"llmc_[A-Za-z0-9_-]*")
_MAX_NAME: Final = 256  # a name longer than any valid one is cut (it is refused anyway)

# parameter name → span attribute; nothing else is ever read from a call
_SAFE_PARAMETERS: Final = {
    "namespace": "llm_config.namespace",
    "key": "llm_config.key",
    "env": "llm_config.environment",
    "environment": "llm_config.environment",
    "version": "llm_config.version",
    "prefix": "llm_config.prefix",
    "name": "llm_config.name",
    "pattern": "llm_config.pattern",
    "source": "llm_config.source_environment",
    "target": "llm_config.target_environment",
    "from_env": "llm_config.source_environment",
    "to_env": "llm_config.target_environment",
}
_ENVIRONMENTS: Final = {
    "base": "base", "development": "development", "dev": "development", "staging": "staging",
    "stage": "staging", "production": "production", "prod": "production", "edge": "edge",
}
_ENVIRONMENT_ATTRIBUTES: Final = frozenset(
    {"llm_config.environment", "llm_config.source_environment", "llm_config.target_environment"})

# what is traced of each part: manager and caller operations are their public methods
_MANAGER_SKIP: Final = frozenset({"close", "as_caller", "bind", "peek", "cached_principal", "record_auth_failure",
                                  "record_ban"})
_STORAGE_METHODS: Final = (
    "get_current", "get_version", "history", "list_current", "subjects", "namespaces", "apply", "append_audit",
    "append_audit_many", "audit_events", "audit_head", "create_api_key", "revoke_api_keys", "get_api_key",
    "get_api_key_by_hash", "list_api_keys", "changes_since", "watch_since", "get_meta", "set_meta", "swap_meta",
    "import_rows", "reseal", "seal_counts", "migrate_integrity",
)
_L1_METHODS: Final = ("get",)
_L2_METHODS: Final = ("get", "fill", "tombstone", "publish")

_state_lock = threading.Lock()
_ON: list[bool] = [False]
_classes: dict[tuple[type, str, int], type] = {}  # (class, span prefix, id(tracer)) → its traced subclass
_tracers: list[Any] = []  # every tracer a class above was made for (keeps each id unique)


def mask(text: str) -> str:
    """`text` with anything shaped like an API key (`llmc_…`) masked."""
    return _API_KEY.sub("llmc_[redacted]", text) if "llmc_" in text else text


def enabled() -> bool:
    """True once some manager in this process is instrumented."""
    return _ON[0]


def carry(fn: Callable[[], T]) -> Callable[[], T]:
    """`fn` run in the current context (its active span) when tracing is on — for a hop to a thread
    pool, which does not carry context variables by itself; `fn` itself when it is off."""
    if not _ON[0]:
        return fn
    return functools.partial(contextvars.copy_context().run, fn)


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids (hex), or None outside a recorded span or with tracing off."""
    if not _ON[0]:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def check_env() -> list[str]:
    """The exporters the `OTEL_*` variables ask for (`[]`: tracing disabled), or a ValidationError naming
    the unsupported one — checked before a server announces anything, so no worker fails on it later."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    try:
        import opentelemetry.instrumentation.asgi
        import opentelemetry.sdk.trace  # noqa: F401
    except ModuleNotFoundError:
        raise MissingDependencyError("opentelemetry", "otel") from None
    names = [name.strip().lower() for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")
             if name.strip()] or ["none"]  # [] means disabled, nothing else
    for name in names:
        if name not in ("otlp", "console", "none"):
            raise ValidationError(f"OTEL_TRACES_EXPORTER {name!r} is not supported: use otlp, console or none")
    if "otlp" in names:
        protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
        if protocol != "http/protobuf":
            raise ValidationError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: use http/protobuf "
                                  "(an OpenTelemetry Collector accepts it on port 4318)")
    return names


def provider_from_env(service_version: str | None = None) -> Any:
    """A `TracerProvider` configured by the standard `OTEL_*` variables (see the module docstring).

    Returns None when `OTEL_SDK_DISABLED` is true.
    """
    names = check_env()
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes: dict[str, str] = {}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attributes[SERVICE_NAME] = "llm-config-manager"
    if service_version:
        attributes[SERVICE_VERSION] = service_version
    provider = TracerProvider(resource=Resource.create(attributes))
    if "console" in names:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in names:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def instrument(manager: Any, tracer_provider: Any = None) -> None:
    """Trace `manager`'s operations, its callers', its cache tiers' and its storage's calls.

    `tracer_provider`: an OpenTelemetry `TracerProvider`; the global one when None. Idempotent.
    """
    try:
        from opentelemetry import trace
    except ModuleNotFoundError:
        raise MissingDependencyError("opentelemetry", "otel") from None
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours: str | None = version("llm-config-manager")
    except PackageNotFoundError:
        ours = None
    with _state_lock:
        if getattr(type(manager), "_llm_config_traced", False):
            return  # a manager keeps the provider it was first instrumented with
        tracer = trace.get_tracer(TRACER_NAME, ours, tracer_provider=tracer_provider)
        _tracers.append(tracer)
        _swap(manager, "llm_config.", _public_methods(type(manager)), tracer, caller_methods=True)
        _swap(manager.storage, "storage.", _STORAGE_METHODS, tracer, fixed=_db_system)
        cache = manager.cache
        _swap(cache.l1, "cache.l1.", _L1_METHODS, tracer)
        if cache.l2 is not None:
            _swap(cache.l2, "cache.l2.", _L2_METHODS, tracer)
        _ON[0] = True


def _db_system(storage: Any) -> dict[str, str]:
    return {"db.system": str(getattr(storage, "dialect", None) or "unknown")}


def _public_methods(cls: type) -> list[str]:
    names = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or name in _MANAGER_SKIP:
            continue
        static = inspect.getattr_static(cls, name)
        if isinstance(static, staticmethod | classmethod | property) or not callable(member):
            continue
        if inspect.isgeneratorfunction(member):  # a span would end before the first item
            continue
        names.append(name)
    return names


def _swap(obj: Any, prefix: str, methods: Iterable[str], tracer: Any, *,
          fixed: Callable[[Any], dict[str, str]] | None = None, caller_methods: bool = False) -> None:
    cls = type(obj)
    if getattr(cls, "_llm_config_traced", False):
        return
    key = (cls, prefix, id(tracer))
    traced = _classes.get(key)
    if traced is None:
        namespace: dict[str, Any] = {"__slots__": (), "_llm_config_traced": True}
        for name in methods:
            method = getattr(cls, name, None)
            if method is not None and callable(method):
                hits = prefix.startswith("cache.") and name == "get"  # a tier's get answers None for a miss
                namespace[name] = _traced(method, prefix + name, tracer, fixed, hits=hits)
        if caller_methods:
            namespace["as_caller"] = _caller_factory(cls, tracer)
        traced = _classes[key] = type("Traced" + cls.__name__, (cls,), namespace)
    obj.__class__ = traced


def _caller_factory(cls: type, tracer: Any) -> Callable[..., Any]:
    make = cls.as_caller  # type: ignore[attr-defined]
    made: dict[type, type] = {}  # the caller's class → its traced subclass (one lookup per request)

    @functools.wraps(make)
    def as_caller(self: Any, *args: Any, **kwargs: Any) -> Any:
        caller = make(self, *args, **kwargs)
        traced = made.get(type(caller))
        if traced is not None:
            caller.__class__ = traced
            return caller
        plain = type(caller)
        with _state_lock:
            _swap(caller, "llm_config.", _public_methods(plain), tracer)
        made[plain] = type(caller)
        return caller

    return as_caller


def _positions(fn: Callable[..., Any]) -> tuple[dict[int, str], dict[str, str]]:
    """Where the allow-listed parameters of `fn` arrive: by position (after self) and by name."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}, {}
    positional = {}
    by_name = {}
    for index, parameter in enumerate(parameters):
        attribute = _SAFE_PARAMETERS.get(parameter.name)
        if attribute is None:
            continue
        by_name[parameter.name] = attribute
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional[index] = attribute
    return positional, by_name


def _attribute(name: str, value: object) -> str | int | None:
    if name in _ENVIRONMENT_ATTRIBUTES:
        if isinstance(value, Environment):
            return value.value
        return _ENVIRONMENTS.get(value.strip().lower(), "invalid") if isinstance(value, str) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):  # a name, checked later by the manager: an API key pasted into it is masked
        return mask(value[:_MAX_NAME])
    return None


def _traced(method: Callable[..., Any], span_name: str, tracer: Any,
            fixed: Callable[[Any], dict[str, str]] | None, *, hits: bool) -> Callable[..., Any]:
    positional, by_name = _positions(method)
    from opentelemetry.trace import Status, StatusCode, get_current_span

    @functools.wraps(method)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        parent = get_current_span()
        if not parent.is_recording() and parent.get_span_context().is_valid:
            return method(self, *args, **kwargs)  # a trace not sampled: its children would not be either
        attributes: dict[str, Any] = fixed(self) if fixed is not None else {}
        for index, attribute in positional.items():
            if index < len(args):
                value = _attribute(attribute, args[index])
                if value is not None:
                    attributes[attribute] = value
        for name, given in kwargs.items():
            named = by_name.get(name)
            if named is not None:
                value = _attribute(named, given)
                if value is not None:
                    attributes[named] = value
        with tracer.start_as_current_span(span_name, attributes=attributes, record_exception=False,
                                          set_status_on_exception=False) as span:
            try:
                result = method(self, *args, **kwargs)
            except BaseException as exc:
                outcome = type(exc).__name__
                span.set_attribute("llm_config.outcome", outcome)
                span.set_status(Status(StatusCode.ERROR, outcome))  # the class, never the message
                raise
            span.set_attribute("llm_config.outcome", "ok")
            if hits:
                span.set_attribute("llm_config.cache.hit", result is not None)
            return result

    return traced
