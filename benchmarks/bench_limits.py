"""What honouring the SDK's attribute limits costs on the emitter's fast path (issue 10).

One ``LogEmitter`` per side emits N records with the attributes a bridged ``logger.info()`` inside a task carries
(task id and name, code location, thread: 8 attributes), into an ``ExportBuffer`` whose export does nothing, so
that only the emitting is timed. Sides, alternating round by round:

- ``fast path, default limits`` -- the production default (128 attributes, no length limit): one length check;
- ``fast path, length limit``   -- ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=256``: the SDK's ``BoundedAttributes``
  applied to every record, exactly as the SDK does;
- ``SDK logger``                -- reference: the same records through the SDK's ``Logger`` (what the fast path
  saves), its processor adding to the same kind of buffer.

    python benchmarks/bench_limits.py [--records 50000 --rounds 5] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk.resources import Resource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, loadavg, machine, median, table  # noqa: E402

from omegaml_otel._internal.export.buffer import BufferedLogProcessor, ExportBuffer  # noqa: E402
from omegaml_otel._internal.export.emitter import LogEmitter  # noqa: E402

ATTRIBUTES = {"celery.task_id": "5f1c9a2e-8d7b-4c1e-9a3f-2b6d8e0f1a4c", "celery.task_name": "theirapp.add",
              "code.filepath": "/srv/theirapp/tasks.py", "code.function": "add", "code.lineno": 42,
              "thread.id": 140234, "thread.name": "MainThread", "omegaml.levelno": 20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: 5,000 records, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.records, args.rounds = 5_000, 2

    resource = Resource.create({"service.name": "bench"})

    def nothing(batch) -> None:
        pass

    def buffer() -> ExportBuffer:
        return ExportBuffer(nothing, name="logs", interval=3600, max_batch=10 * args.records)

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    sdk_buffer = buffer()
    provider.add_log_record_processor(BufferedLogProcessor(sdk_buffer))
    default = LogEmitter(provider, buffer(), scrubber=None, limits=LogRecordLimits())
    limited = LogEmitter(provider, buffer(), scrubber=None, limits=LogRecordLimits(max_attribute_length=256,
                                                                                   max_log_record_attribute_length=256))
    through_sdk = LogEmitter(provider, scrubber=None)
    sides = {"fast path, default limits": default, "fast path, length limit 256": limited,
             "SDK logger": through_sdk}
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    print(f"# {args.records:,} records per side and round, {args.rounds} rounds; {machine()}; load {loadavg()}")

    def run(emitter: LogEmitter) -> float:
        emit = emitter.emit
        gc.collect()
        t0 = time.perf_counter()
        for i in range(args.records):
            emit("theirapp.tasks", timestamp=i, severity_number=SeverityNumber.INFO, severity_text="INFO",
                 body="adding 2 and 3", attributes=dict(ATTRIBUTES))
        elapsed = time.perf_counter() - t0
        for b in (emitter._buffer, sdk_buffer):
            if b is not None:
                b.flush()
        return elapsed

    for emitter in sides.values():
        run(emitter)  # warm-up
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(run(sides[name]))
    base = median(times[names[0]])
    rows = [[name, median(times[name]) / args.records * 1e9, median(times[name]) / base] for name in names]
    print(table(["side", "ns per record (median)", "vs default limits"], rows))
    emit_result("limits", {"default_ns": base / args.records * 1e9,
                           "length_limit_ratio": median(times[names[1]]) / base,
                           "sdk_ratio": median(times[names[2]]) / base})
    return 0


if __name__ == "__main__":
    sys.exit(main())
