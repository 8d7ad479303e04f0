"""Names shared by the writers and the readers of telemetry: one home for each.

What a capture module writes into a record and what a reader filters on must agree letter for letter, and so must
a user's SQL and Grafana panels. Every attribute key, instrumentation scope, baggage key and event name that more
than one module relies on is defined here; nothing here does anything.
"""
from __future__ import annotations

# -- instrumentation scopes (the ScopeName column) -----------------------------------------------------------------
#: experiment events
EXPERIMENT_SCOPE = "omegaml.experiment"
#: the record that closes a task's records on the collector path (readers wait for it)
TASK_END_SCOPE = "omegaml_otel.task"
#: profiling samples
PROFILING_SCOPE = "omegaml_otel.profiling"
#: the tracer of experiment runs
RUN_TRACER = "omegaml_otel.experiment"
#: the logger name of the log dataset's own records ('log init')
SYSTEM_LOGGER = "system"

# -- opentelemetry-instrument -----------------------------------------------------------------------------------------
#: the package's entry point name in the opentelemetry_distro and opentelemetry_configurator groups (the value of
#: OTEL_PYTHON_DISTRO and OTEL_PYTHON_CONFIGURATOR that selects them)
DISTRO = "omegaml_otel"

# -- resource attributes -------------------------------------------------------------------------------------------
SERVICE_NAME = "service.name"
HOST_NAME = "host.name"
USER = "omegaml.user"
PROCESS_PID = "process.pid"
PROCESS_PARENT_PID = "process.parent_pid"
INSTANCE_ID = "service.instance.id"

# -- log record attributes -----------------------------------------------------------------------------------------
TASK_ID = "celery.task_id"
TASK_NAME = "celery.task_name"
#: true on the task-end record (scope TASK_END_SCOPE)
TASK_END = "omegaml.task.end"
#: 'stdout' or 'stderr' on records made from print output
IOSTREAM = "log.iostream"
JOB_NAME = "job.name"
NOTEBOOK_CELL = "notebook.cell"
#: a Python record's extra=... key that would override the package's own attribute is stored under this prefix
RENAMED_EXTRA_PREFIX = "extra."

# -- the log dataset (om.logger) -----------------------------------------------------------------------------------
LOG_DATASET = ".omega/logs"
#: the dataset a record belongs to; records without it are not in om.logger.dataset
DATASET = "omegaml.log.dataset"
#: the simple logger's own level number (QUIET 0 ... DEBUG 5, SYSTEM 999)
LEVELNO = "omegaml.levelno"
#: true on the 'log init' record that om.logger.reset() writes
LOG_RESET = "omegaml.log.reset"

# -- experiments -----------------------------------------------------------------------------------------------------
EXPERIMENT = "omegaml.experiment"
#: the run's unique id: the trace id of its root span, 32 hex digits
RUN = "omegaml.run.id"
EVENT = "omegaml.event"
KEY = "omegaml.key"
VALUE = "omegaml.value"
STEP = "omegaml.step"
PROVIDER = "omegaml.provider"
PROFILE_INTERVAL = "omegaml.profile.interval"
#: prefix of the extra fields of an event (exp.log_extra, keyword arguments of log_metric, ...)
EXTRA_PREFIX = "omegaml.extra."
#: baggage a run puts on the context of the tasks sent in its block; the worker reads it back
BAGGAGE_KEYS = (EXPERIMENT, RUN, PROVIDER, PROFILE_INTERVAL)


class Event:
    """Experiment event names (the ``event`` column of ``exp.data()``)."""

    #: the experiment's declaration, carrying its provider (no run)
    DECLARED = "experiment"
    #: hides everything logged before it (exp.clear)
    CLEAR = "clear"
    START = "start"
    STOP = "stop"
    SYSTEM = "system"
    TASK_CALL = "task_call"
    TASK_SUCCESS = "task_success"
    TASK_FAILURE = "task_failure"
    TASK_RETRY = "task_retry"
    METRIC = "metric"
    PARAM = "param"
    ARTIFACT = "artifact"
    DATA = "data"
    #: rows made from profiling samples (metrics, not log records)
    PROFILE = "profile"


#: tracking providers, and the aliases omega-ml accepts
PROVIDERS = ("simple", "profiling", "notrack")

# -- profiling: the task's own process tree beside the host (metric names and attribute keys readers rely on) -----
#: CPU of the task's process tree, per ``cpu.mode`` (user, system), as a share of all logical CPUs (semconv)
PROCESS_CPU_UTILIZATION = "process.cpu.utilization"
#: resident memory of the task's process tree, bytes (semconv)
PROCESS_MEMORY_USAGE = "process.memory.usage"
#: GPU memory the task's process tree uses on one device (``hw.id``), bytes: semconv has no per-process GPU metric,
#: so this extends ``process.*`` with the name of ``hw.gpu.memory.usage``
PROCESS_GPU_MEMORY_USAGE = "process.gpu.memory.usage"
CPU_MODE = "cpu.mode"
CPU_LOGICAL_NUMBER = "cpu.logical_number"
HW_ID = "hw.id"
