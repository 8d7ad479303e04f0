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
from omegaml_otel.settings import Settings, parse_duration, settings


def _worker(args) -> int:
    # local: the gevent and eventlet pools need their monkey patches before the worker's modules import threading,
    # socket or ssl, as `celery worker -P gevent` does (nothing this module imported so far has)
    from celery import maybe_patch_concurrency

    maybe_patch_concurrency(["--pool", args.pool])
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
    if not cfg.store_url.startswith("sqlite:") or not cfg.writes_store():
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


def _clickhouse_store(args, command: str):
    """The ClickHouse store ``--store``/``--database`` name, or a StoreError that says which URLs work."""
    # local: see the module doc
    from omegaml_otel._internal.stores import open_store
    from omegaml_otel._internal.stores.clickhouse import ClickHouseStore

    store = open_store(args.store, create=False)
    if not isinstance(store, ClickHouseStore):
        store.close()
        raise StoreError(f"omtel schema {command} is for ClickHouse stores (chdb:///path, clickhouse://host/db), "
                         f"not {store.url}; the embedded SQLite store creates and upgrades its tables itself")
    if args.database:
        store.database = args.database
    return store


def _schema_apply(args) -> int:
    store = _clickhouse_store(args, "apply")
    try:
        stmts = store.apply_schema(ttl_days=args.ttl_days, cluster=args.cluster)
        status = store.schema_status(ttl_days=args.ttl_days, cluster=args.cluster)
        tables = store.tables()
    finally:
        store.close()
    on = f" on cluster {args.cluster}" if args.cluster else ""
    done = f"applied {len(stmts)} statements" if stmts else "nothing to change"
    print(f"{done} in {store.url} (database {store.database}{on}, schema version {status.recorded}); "
          f"tables: {', '.join(sorted(tables))}")
    for note in status.notes:
        print(f"note: {note}")
    return 0


def _schema_status(args) -> int:
    """Exit status 0: up to date; 1: ``omtel schema apply`` has something to do (the plan is printed as SQL)."""
    store = _clickhouse_store(args, "status")
    try:
        status = store.schema_status(ttl_days=args.ttl_days, cluster=args.cluster)
    finally:
        store.close()
    recorded = f"schema version {status.recorded}" if status.recorded else "no schema version recorded"
    print(f"-- {store.url} database {status.database}: {recorded}; this omegaml-otel writes version {status.target}")
    for note in status.notes:
        print(f"-- note: {note}")
    if status.up_to_date:
        print("-- up to date")
        return 0
    if not status.steps:
        print("-- no table changes; `omtel schema apply` records the version")
        return 1
    print(f"-- `omtel schema apply` would run {len(status.steps)} statements:")
    for step in status.steps:
        print(f"\n-- {step.reason}\n{step.statement};")
    return 1


def _schema_show(args) -> int:
    from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl  # local: see the module doc

    print(";\n\n".join(render_ddl(args.database, args.ttl_days, cluster=args.cluster)) + ";")
    return 0


def _embedded_store(command: str):
    """The embedded store that settings name, or a StoreError saying that a ClickHouse store ages out by TTL."""
    from omegaml_otel._internal.stores import open_store  # local: see the module doc

    store = open_store(settings().store_url, create=False)
    if not hasattr(store, "prune"):
        store.close()
        raise StoreError(f"omtel {command} is for the embedded SQLite store, not {store.url}: a ClickHouse store "
                         "drops old rows by its table TTL (omtel schema apply --ttl-days)")
    return store


def _prune(args) -> int:
    """One retention pass now, whatever OMTEL_RETENTION says (stores/retention.py)."""
    older_than = parse_duration(args.older_than, "--older-than")
    store = _embedded_store("prune")
    try:
        if args.vacuum:
            began = time.monotonic()
            store.vacuum()
            print(f"vacuumed {store.url} in {time.monotonic() - began:.1f} s: prunes now give space back")
        result = store.prune(older_than)
    finally:
        store.close()
    per_table = ", ".join(f"{table} {n:,}" for table, n in result.deleted.items() if n)
    print(f"deleted {result.total:,} rows older than {args.older_than}" + (f" ({per_table})" if per_table else ""))
    windows = "; ".join(f"{name} since {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ns / 1e9))} UTC"
                        for name, ns in result.windows.items())
    print(f"kept: {result.pinned_runs} pinned run(s), experiment runs' start events, and the log dataset window "
          f"({windows + '; ' if windows else ''}a dataset never reset keeps every record: om.logger.reset() starts "
          "a new window)")
    if result.reclaimed:
        print(f"store size {result.bytes_before / 1e6:,.1f} MB -> {result.bytes_after / 1e6:,.1f} MB")
    else:
        print("the freed space is reused by later writes; run omtel prune --vacuum once so that prunes also give it "
              "back to the disk (it rewrites the store while writers wait)")
    return 0


def _pin(args) -> int:
    if args.list:
        store = _embedded_store("pin")
        try:
            for run_id, experiment, ns in store.pins():
                print(f"{run_id}  {experiment}  pinned {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ns / 1e9))} UTC")
        finally:
            store.close()
        return 0
    if not args.experiment:
        raise ValueError("omtel pin needs an EXPERIMENT (and its RUNs), or --list")
    runs = args.runs[0] if args.runs in (["all"], ["*"]) else (args.runs or None)
    ids = om.runtime.experiment(args.experiment).pin(run=runs, remove=args.remove)
    print(f"{'unpinned' if args.remove else 'pinned'} {len(ids)} run(s) of {args.experiment}: {', '.join(ids)}")
    return 0


def _schema_target(parser: argparse.ArgumentParser, *, ttl_help: str, cluster_help: str) -> None:
    """The arguments naming the database that `schema apply` changes and `schema status` compares."""
    parser.add_argument("--store", required=True,
                        help="chdb:///abs/path or clickhouse://user:password@host:8123/otel")
    parser.add_argument("--database", default=None, help="database name (default: the URL's, else otel)")
    parser.add_argument("--ttl-days", type=int, default=None, help=ttl_help)
    parser.add_argument("--cluster", default=None, help=cluster_help)


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
    ap = scs.add_parser("apply", help="create or upgrade the database and tables in place "
                        "(collector-config/clickhouse/schema.sql); never drops anything")
    _schema_target(ap, ttl_help="drop data older than this many days",
                   cluster_help="a cluster from <remote_servers>: replicated + Distributed tables")
    ap.set_defaults(func=_schema_apply)
    st = scs.add_parser("status", help="what `schema apply` would change in a database, as SQL; exit status 1 "
                        "if anything")
    _schema_target(st, ttl_help="the retention new tables would get",
                   cluster_help="compare with the cluster variant (this node's tables)")
    st.set_defaults(func=_schema_status)
    sh = scs.add_parser("show", help="print the whole DDL, for review or clickhouse-client (connects nowhere)")
    sh.add_argument("--database", default="otel", help="database name (default otel)")
    sh.add_argument("--ttl-days", type=int, default=None, help="drop data older than this many days")
    sh.add_argument("--cluster", default=None, help="a cluster from <remote_servers>: replicated + Distributed tables")
    sh.set_defaults(func=_schema_show)
    pr = sub.add_parser("prune", help="delete old rows of the embedded store now (pinned runs and the log dataset "
                                      "window stay) and give the space back")
    pr.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m (units s m h d w)")
    pr.add_argument("--vacuum", action="store_true",
                    help="first rewrite the store once, so that prunes of a store made before retention "
                         "existed give space back")
    pr.set_defaults(func=_prune)
    pn = sub.add_parser("pin", help="keep experiment runs whatever the retention; --remove lets them age out")
    pn.add_argument("experiment", nargs="?")
    pn.add_argument("runs", nargs="*", help="run numbers or ids, or all (default: the latest run)")
    pn.add_argument("--remove", action="store_true")
    pn.add_argument("--list", action="store_true", help="print the pinned runs")
    pn.set_defaults(func=_pin)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TimeoutError, RuntimeError) as exc:
        print(f"omtel: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
