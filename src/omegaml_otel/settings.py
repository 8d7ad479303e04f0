"""The one place that reads configuration.

Every ``OMTEL_*`` setting and the standard ``OTEL_*`` exporter variables this package acts on are read here,
once per process (``settings()`` caches), so that a worker child, a client and the CLI agree on where data goes.
``reset_settings()`` exists for tests and for the CLI, which may change the environment before first use.
"""
from __future__ import annotations

import getpass
import os
import platform
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from omegaml_otel._internal.secure import mask_url
from omegaml_otel.errors import ConfigurationError

__all__ = ["Batching", "Settings", "settings", "reset_settings", "parse_duration", "ConfigurationError",
           "STORE_EXPORTER"]

#: exporter name meaning "write into the embedded store" (usable in OTEL_*_EXPORTER lists next to otlp/console)
STORE_EXPORTER = "omtel"
_SIGNALS = ("traces", "logs", "metrics")


@dataclass(frozen=True)
class Batching:
    """One signal's ``OTEL_BLRP_*`` (logs) or ``OTEL_BSP_*`` (spans) settings, as the package's ``ExportBuffer``
    applies them: the SDK's names keep working when the package's batching replaces the SDK's processors.
    ``schedule_delay`` is None when unset (a store is then written every OMTEL_FLUSH_INTERVAL, a collector every
    5 s); ``max_queue`` falls back to OMTEL_MAX_QUEUE and ``max_batch`` to 4096 (a store write is cheapest in big
    batches); ``export_timeout`` bounds one export in the export thread (the SDK's 30 s)."""

    schedule_delay: float | None = None
    max_queue: int = 200_000
    max_batch: int = 4096
    export_timeout: float = 30.0


@dataclass(frozen=True)
class Settings:
    home: Path
    store_url: str
    broker_url: str
    result_backend: str
    loglevel: str
    hostname: str
    userid: str
    service_name: str | None
    #: exporters per signal, e.g. {"logs": ("omtel",), "traces": ("otlp",)}
    exporters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: OTLP protocol per signal: http/protobuf or grpc (checked when an exporter is made: otlp.PROTOCOLS)
    otlp_protocols: dict[str, str] = field(default_factory=dict)
    flush_interval: float = 0.2
    max_queue: int = 200_000
    #: seconds a caller's flush (before a task result, after a log call outside a task, before a read) waits for a
    #: store or collector that makes no progress before it leaves the records to the export thread
    flush_timeout: float = 1.0
    #: seconds an exiting process (or pool child) spends at most on exporting what is pending
    exit_timeout: float = 2.0
    #: seconds before the first retry of a failing store or collector (doubling while it keeps failing)
    retry_interval: float = 1.0
    broker_polling: float = 0.01
    worker_concurrency: int = 2
    #: seconds between profiling samples (exp.profiler.interval overrides it per experiment object)
    profile_interval: float = 1.0
    #: the SDK batch processors' settings, per signal ("logs": OTEL_BLRP_*, "traces": OTEL_BSP_*), which the
    #: package's own batching honours (see Batching)
    batching: dict[str, Batching] = field(default_factory=dict)
    #: OTEL_PYTHON_DISTRO: the distro opentelemetry-instrument runs, when one is named (None: the first installed)
    python_distro: str | None = None
    #: OTEL_SDK_DISABLED=true: the package's instrumentors and exporters do nothing (as the SDK's providers)
    sdk_disabled: bool = False
    #: log record attribute limits, as the SDK's LogRecordLimits reads them (OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
    #: else OTEL_ATTRIBUTE_COUNT_LIMIT, else 128; the value length limit likewise, else none)
    log_attribute_count_limit: int | None = 128
    log_attribute_length_limit: int | None = None
    #: credentials for clickhouse:// store URLs that carry none (never shown in reprs or messages)
    clickhouse_user: str = "default"
    clickhouse_password: str = field(default="", repr=False)
    #: extra task modules the runtime's Celery app imports (the worker runs them too)
    imports: tuple[str, ...] = ()
    #: replace secrets in records before they leave the process (OMTEL_SCRUB=false turns it off)
    scrub: bool = True
    #: regular expressions of secret keys, in addition to the default patterns (matched case-insensitively)
    scrub_patterns: tuple[str, ...] = ()
    #: characters of a printed line kept in one record; a longer line is split into several records
    max_line: int = 65_536
    #: OMTEL_ARTIFACTS: the folder of pickled artifacts (None: OMTEL_HOME/artifacts); see artifact_folder
    artifacts: Path | None = None
    #: OMTEL_ARTIFACTS_KEY: the key file that signs them (None: OMTEL_HOME/artifacts.key); see artifact_key
    artifacts_key: Path | None = None
    #: OMTEL_RETENTION: seconds the embedded store keeps rows (None: forever); see stores/retention.py
    retention: float | None = 30 * 86400.0
    #: OMTEL_STORE_RELAY: a prefork worker's pool children write the embedded store through its main process
    store_relay: bool = True

    def __repr__(self) -> str:
        # URLs carry credentials (clickhouse://u:secret@h, redis://:secret@h) and reprs get pasted into tickets
        shown = ", ".join(f"{f.name}={mask_url(repr(getattr(self, f.name)))}" for f in fields(self) if f.repr)
        return f"{type(self).__name__}({shown})"

    @property
    def artifact_folder(self) -> Path:
        return self.artifacts or self.home / "artifacts"

    @property
    def artifact_key(self) -> Path:
        return self.artifacts_key or self.home / "artifacts.key"

    @property
    def broker_folder(self) -> Path:
        return self.home / "broker"

    @property
    def embedded_store_path(self) -> Path:
        return self.home / "telemetry.sqlite"

    def uses_store(self, signal: str) -> bool:
        return STORE_EXPORTER in self.exporters.get(signal, ())

    def writes_store(self) -> bool:
        """Some signal goes to the store."""
        return any(self.uses_store(signal) for signal in _SIGNALS)

    def store_only(self, signal: str) -> bool:
        """The embedded store is the signal's only destination: its records are readable once written locally,
        and nothing needs to wait for a collector."""
        return self.exporters.get(signal, ()) == (STORE_EXPORTER,)


def _exporters(env: dict[str, str]) -> dict[str, tuple[str, ...]]:
    known = {STORE_EXPORTER, "otlp", "otlp_proto_http", "console", "none"}
    out = {}
    for signal in _SIGNALS:
        var = f"OTEL_{signal.upper()}_EXPORTER"
        names = tuple(n.strip() for n in env.get(var, STORE_EXPORTER).split(",") if n.strip())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigurationError(
                f"{var}={env[var]!r}: unknown exporter {unknown[0]!r}; use a comma list of "
                f"{', '.join(sorted(known))} ({STORE_EXPORTER!r} = the embedded store)")
        out[signal] = tuple(n for n in names if n != "none")
    return out


def _float(env: dict[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        raise ConfigurationError(f"{name}={env[name]!r} is not a number; unset it or give seconds, e.g. 0.2") from None


def _seconds(env: dict[str, str], name: str, default: float, above: float | None = None) -> float:
    """A duration in seconds: at least 0, or more than ``above`` (a retry interval of 0 would retry in a loop)."""
    value = _float(env, name, default)
    if value != value or value < 0 or (above is not None and value <= above):
        least = "at least 0" if above is None else f"more than {above:g}"
        raise ConfigurationError(f"{name}={env[name]!r}: give seconds, {least}, e.g. {default:g} (or unset it)")
    return value


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={env[name]!r} is not a yes/no value; use true or false (or unset it)")


def _positive(env: dict[str, str], name: str, default: int, at_least: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < at_least:
        raise ConfigurationError(f"{name}={env[name]!r}: give a whole number of at least {at_least} (or unset it)")
    return int(raw)


def _patterns(env: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma list of regular expressions, each checked here so a typo is reported before any record is sent."""
    patterns = tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigurationError(
                f"{name}: {pattern!r} is not a regular expression ({exc}); give a comma list of regular "
                f"expressions such as iban,ssn (a pattern cannot contain a comma)") from None
    return patterns


@lru_cache(maxsize=1)
def settings() -> Settings:
    env = dict(os.environ)
    home = Path(env.get("OMTEL_HOME") or Path.home() / ".omegaml-otel").expanduser().absolute()
    store_url = env.get("OMTEL_STORE") or f"sqlite://{home / 'telemetry.sqlite'}"
    broker_url = env.get("OMTEL_BROKER") or "filesystem://"
    default_backend = f"file://{home / 'results'}" if broker_url == "filesystem://" else _backend_for(broker_url)
    protocols = {s: (env.get(f"OTEL_EXPORTER_OTLP_{s.upper()}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                     or "http/protobuf").strip() for s in _SIGNALS}
    loglevel = env.get("OMTEL_LOGLEVEL", "INFO").upper()
    max_queue = int(_float(env, "OMTEL_MAX_QUEUE", 200_000))
    return Settings(
        home=home,
        store_url=store_url,
        broker_url=broker_url,
        result_backend=env.get("OMTEL_RESULT_BACKEND") or default_backend,
        loglevel=loglevel,
        hostname=env.get("HOSTNAME") or platform.node(),
        userid=env.get("OMTEL_USERID") or _user(),
        service_name=env.get("OTEL_SERVICE_NAME") or _resource_attribute(env, "service.name"),
        exporters=_exporters(env),
        otlp_protocols=protocols,
        flush_interval=_float(env, "OMTEL_FLUSH_INTERVAL", 0.2),
        max_queue=max_queue,
        flush_timeout=_seconds(env, "OMTEL_FLUSH_TIMEOUT", 1.0),
        exit_timeout=_seconds(env, "OMTEL_EXIT_TIMEOUT", 2.0),
        retry_interval=_seconds(env, "OMTEL_RETRY_INTERVAL", 1.0, above=0),
        broker_polling=_float(env, "OMTEL_BROKER_POLLING", 0.01),
        worker_concurrency=int(_float(env, "OMTEL_WORKER_CONCURRENCY", 2)),
        profile_interval=_float(env, "OMTEL_PROFILE_INTERVAL", 1.0),
        batching={"logs": _batching(env, max_queue, "OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BLRP_MAX_QUEUE_SIZE",
                                    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "OTEL_BLRP_EXPORT_TIMEOUT"),
                  "traces": _batching(env, max_queue, "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE",
                                      "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_EXPORT_TIMEOUT")},
        python_distro=env.get("OTEL_PYTHON_DISTRO") or None,
        sdk_disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",  # the SDK's own test
        log_attribute_count_limit=_limit(env, ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
                                         128),
        log_attribute_length_limit=_limit(env, ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                                                "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"), None),
        clickhouse_user=env.get("CLICKHOUSE_USER", "default"),
        clickhouse_password=env.get("CLICKHOUSE_PASSWORD", ""),
        imports=tuple(m.strip() for m in env.get("OMTEL_IMPORTS", "").split(",") if m.strip()),
        scrub=_flag(env, "OMTEL_SCRUB", True),
        scrub_patterns=_patterns(env, "OMTEL_SCRUB_PATTERNS"),
        max_line=_positive(env, "OMTEL_MAX_LINE", 65_536, at_least=80),
        artifacts=_folder(env, "OMTEL_ARTIFACTS"),
        artifacts_key=_folder(env, "OMTEL_ARTIFACTS_KEY"),
        retention=_retention(env, "OMTEL_RETENTION", "30d"),
        store_relay=_flag(env, "OMTEL_STORE_RELAY", True),
    )


#: units of a duration such as OMTEL_RETENTION=30d (seconds each); the same letters as the readers' '5h' offsets
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str, name: str) -> float:
    """Seconds of a duration such as ``30d``, ``12h`` or ``90m``: ``OMTEL_RETENTION`` and ``omtel prune
    --older-than`` read the same syntax."""
    m = _DURATION.match(text.lower())
    if m is None or float(m[1]) <= 0:
        raise ConfigurationError(f"{name}={text!r}: give a duration such as 30d, 12h or 90m (units: "
                                 f"{', '.join(DURATION_UNITS)})")
    return float(m[1]) * DURATION_UNITS[m[2]]


def _retention(env: dict[str, str], name: str, default: str) -> float | None:
    """``off`` (or ``never``, ``0``) keeps every row forever."""
    raw = env.get(name, "").strip() or default
    if raw.lower() in ("off", "never", "0", "none", "false"):
        return None
    return parse_duration(raw, name)


def _batching(env: dict[str, str], max_queue: int, delay: str, queue: str, batch: str, timeout: str) -> Batching:
    """One signal's batch processor settings, named as the SDK names them: milliseconds and whole numbers."""
    return Batching(
        schedule_delay=_seconds(env, delay, 5000) / 1000 if env.get(delay, "").strip() else None,
        max_queue=_positive(env, queue, max_queue),
        max_batch=_positive(env, batch, 4096),
        export_timeout=_seconds(env, timeout, 30_000, above=0) / 1000,
    )


def _limit(env: dict[str, str], names: tuple[str, ...], default: int | None) -> int | None:
    """An SDK attribute limit: the first of ``names`` that is set (``unset`` means no limit), else ``default``."""
    for name in names:
        raw = env.get(name, "").strip().lower()
        if not raw:
            continue
        if raw == "unset":
            return None
        if not raw.isdigit():
            raise ConfigurationError(f"{name}={env[name]!r}: give a whole number of at least 0, or 'unset' for no "
                                     "limit (or unset it)")
        return int(raw)
    return default


def _folder(env: dict[str, str], name: str) -> Path | None:
    """A local path (``~`` expanded, made absolute), or None when unset; a mounted folder serves for sharing."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    elif "://" in raw:
        raise ConfigurationError(f"{name}={mask_url(raw)!r}: only a local or mounted path is supported, e.g. "
                                 "/shared/omtel/artifacts (or unset it for the default under OMTEL_HOME)")
    return Path(raw).expanduser().absolute()


def _resource_attribute(env: dict[str, str], key: str) -> str | None:
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        k, _, v = item.partition("=")
        if k.strip() == key and v.strip():
            return v.strip()
    return None


def _backend_for(broker_url: str) -> str:
    if broker_url.startswith("redis"):
        return broker_url
    return "rpc://"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def reset_settings() -> None:
    settings.cache_clear()


def cuda_visible_devices() -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as this process has it now, not cached: it is the CUDA runtime's setting, which a
    task may set for itself before it touches a GPU, and profiling reports only the devices it names."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")
