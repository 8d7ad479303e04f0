"""``omtel``: run a worker, read and follow logs, ping, and run the demo.

Each command imports what it needs when it runs (the local imports below): ``omtel --help`` and ``omtel worker``
should not pay for pandas and the readers, nor ``omtel schema show`` for a worker.
"""
from __future__ import annotations

import argparse
import sys
import time

import omegaml_otel as om
from omegaml_otel.errors import StoreError
from omegaml_otel.settings import Settings, settings


def _worker(args) -> int:
    from omegaml_otel.worker import run_worker  # local: see the module doc

    cfg = settings()
    try:
        _check_embedded_store(cfg)
        run_worker(concurrency=args.concurrency, loglevel=args.loglevel, pool=args.pool,
                   max_tasks_per_child=args.max_tasks_per_child, queues=args.queues)
    except OSError as exc:  # a folder or file of the worker's that cannot be made: one line, not a traceback
        print(f"omtel worker: {exc}; OMTEL_HOME={str(cfg.home)!r} (and OMTEL_STORE, OMTEL_BROKER) must name places "
              "this user can write", file=sys.stderr)
        return 2
    return 0


def _check_embedded_store(cfg: Settings) -> None:
    """Open the embedded SQLite store now: a worker that cannot write it would run tasks and keep none of their
    records. (A ClickHouse server that is down at start may come back; it is left to the exporters' retries.)"""
    if not cfg.store_url.startswith("sqlite:") or not any(cfg.uses_store(s) for s in ("traces", "logs", "metrics")):
        return
    from omegaml_otel._internal.stores import open_store  # local: see the module doc

    store = open_store(cfg.store_url)
    try:
        store.schema_version()
    finally:
        store.close()


def _logs(args) -> int:
    import pandas as pd  # local: see the module doc

    filters = {k: v for k, v in (("logger", args.logger), ("level", args.level)) if v}
    if args.since:
        filters["since"] = args.since
    with pd.option_context("display.max_rows", None, "display.max_colwidth", None, "display.width", None):
        if not args.follow:
            for line in om.logger.dataset.get(**filters)["text"]:
                print(line)
            return 0
        try:
            for df in om.logger.dataset.follow(interval=args.interval, **filters):
                for line in df["text"]:
                    print(line, flush=True)
        except KeyboardInterrupt:
            return 0
    return 0


def _ping(args) -> int:
    print(om.runtime.ping(timeout=args.timeout))
    return 0


_TESTCPU = """\
import numpy as np
A = np.random.rand(1000, 1000)
B = np.random.rand(1000, 1000)
C = np.matmul(A, B)
print('matmul done', C.shape)
"""


def _demo(args) -> int:
    # local: see the module doc
    import pandas as pd

    from omegaml_otel.worker import worker_process

    print(f"# embedded store: {settings().store_url}")
    show = pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 60)
    with worker_process(), show:
        print("\n>>> om.runtime.mode(logging=True); om.runtime.ping(fox='bar'); om.logger.dataset.get()")
        om.logger.reset()
        om.runtime.mode(logging=True)
        print(om.runtime.ping(fox="bar"))
        print(om.logger.dataset.get())
        print("\n>>> logger = om.logger.getLogger('mylogger'); logger.info('some message')")
        om.logger.getLogger("mylogger").info("some message")
        print(om.logger.dataset.get(logger="mylogger"))
        print("\n>>> with om.runtime.experiment('perf', provider='profiling') as exp: "
              "om.runtime.job('testcpu').run().get()")
        om.runtime.mode(logging=False)
        om.jobs.put(_TESTCPU, "testcpu")
        with om.runtime.experiment("perf", provider="profiling") as exp:
            om.runtime.job("testcpu").run().get(timeout=120)
        print(exp.data())
        print("\n>>> om.telemetry.spans() (the spans of that run: one trace)")
        time.sleep(0.5)
        spans = om.telemetry.spans(TraceId=exp.data(extra=True).run_id.iloc[0])
        print(spans[["Timestamp", "SpanName", "SpanKind", "ServiceName", "Duration"]])
    return 0


def _schema_apply(args) -> int:
    # local: see the module doc
    from omegaml_otel._internal.stores import open_store
    from omegaml_otel._internal.stores.clickhouse import ClickHouseStore

    store = open_store(args.store, create=False)
    try:
        if not isinstance(store, ClickHouseStore):
            raise StoreError(f"omtel schema apply is for ClickHouse stores (chdb:///path, clickhouse://host/db), "
                             f"not {store.url}; the embedded SQLite store creates its tables itself")
        if args.database:
            store.database = args.database
        stmts = store.apply_schema(ttl_days=args.ttl_days, cluster=args.cluster)
        tables = store.tables()
    finally:
        store.close()
    on = f" on cluster {args.cluster}" if args.cluster else ""
    print(f"applied {len(stmts)} statements to {store.url} (database {store.database}{on}); "
          f"tables: {', '.join(sorted(tables))}")
    return 0


def _schema_show(args) -> int:
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl  # local: see the module doc

    print(";\n\n".join(render_ddl(args.database, args.ttl_days, cluster=args.cluster)) + ";")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omtel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a Celery worker with task logging, print capture and spans")
    w.add_argument("--concurrency", "-c", type=int, default=None)
    w.add_argument("--loglevel", "-l", default="INFO")
    w.add_argument("--pool", "-P", default="prefork")
    w.add_argument("--max-tasks-per-child", type=int, default=None)
    w.add_argument("--queues", "-Q", default="omegaml", help="comma list of queues to consume (default omegaml)")
    w.set_defaults(func=_worker)
    lg = sub.add_parser("logs", help="print the log dataset (om.logger.dataset) as text; -f follows")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--logger")
    lg.add_argument("--level")
    lg.add_argument("--since", help="e.g. 5m, 2h, 2026-11-26T10:00")
    lg.add_argument("--interval", type=float, default=0.5)
    lg.set_defaults(func=_logs)
    p = sub.add_parser("ping", help="run omegaml.tasks.omega_ping on a worker")
    p.add_argument("--timeout", type=float, default=10)
    p.set_defaults(func=_ping)
    d = sub.add_parser("demo", help="start a worker, run the documented examples, print their DataFrames")
    d.set_defaults(func=_demo)
    sc = sub.add_parser("schema", help="manage the ClickHouse tables")
    scs = sc.add_subparsers(dest="schema_command", required=True)
    ap = scs.add_parser("apply", help="create the database and tables (collector-config/clickhouse/schema.sql)")
    ap.add_argument("--store", required=True, help="chdb:///abs/path or clickhouse://user:password@host:8123/otel")
    ap.add_argument("--database", default=None, help="database name (default: the URL's, else otel)")
    ap.add_argument("--ttl-days", type=int, default=None, help="drop data older than this many days")
    ap.add_argument("--cluster", default=None, help="a cluster from <remote_servers>: replicated + Distributed tables")
    ap.set_defaults(func=_schema_apply)
    sh = scs.add_parser("show", help="print the statements `schema apply` would run, for review or clickhouse-client")
    sh.add_argument("--database", default="otel", help="database name (default otel)")
    sh.add_argument("--ttl-days", type=int, default=None, help="drop data older than this many days")
    sh.add_argument("--cluster", default=None, help="a cluster from <remote_servers>: replicated + Distributed tables")
    sh.set_defaults(func=_schema_show)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TimeoutError, RuntimeError) as exc:
        print(f"omtel: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
