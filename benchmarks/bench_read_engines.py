"""The compat readers on both engines, side by side in one run: SQLite (embedded default) and ClickHouse (chdb).

Two workloads, the same sizes as benchmarks 4 and 6:

- ``logs``    -- ``om.logger.dataset.get()`` over 1,000,000 log-dataset rows (filled by ``bench_read.fill``);
- ``expdata`` -- ``exp.data(run='all')`` over 100 runs x 1,000 events (filled by ``bench_expdata.fill``).

Per workload the SQLite store is filled first, through the real pipeline as in those benchmarks. The ClickHouse
store (``ClickHouseStore('chdb:///…')``, the embedded ClickHouse engine) then gets exactly the same rows: every
table of the SQLite file is read back and written with ``ClickHouseStore.write(table, rows)`` (the path the
exporter uses), followed by ``OPTIMIZE TABLE … FINAL`` so the parts are merged as on a settled server.

chdb binds one database folder per process, so each engine is served by its own long-lived process of this
script (``--serve``); the parent asks them for one round at a time, alternating which engine goes first, and each
server alternates the order of its sides. Sides per engine:

- ``compat``  -- the compatibility reader with ``OMTEL_STORE`` pointing at that engine (SQLite: the embedded
  default; ClickHouse: ``chdb:///…``);
- ``bare``    -- the baseline, what a user writes by hand on the same client the store uses: the same columns with
  the same filter and order into a DataFrame. SQLite: ``sqlite3`` ``fetchall()`` into ``pd.DataFrame`` (the SQL of
  benchmarks 4 and 6). ClickHouse: ``clickhouse_connect.get_client(dsn='chdb:///…').query_df(sql)`` with map
  subscripts (``LogAttributes['omegaml.log.dataset'] = '.omega/logs'``, ``ResourceAttributes['host.name']``);
- ``chdb DataFrame`` -- reference only (ClickHouse): the same SQL through chdb's own
  ``Session.query(sql, 'DataFrame')`` (Arrow), without clickhouse-connect.

Reported: per engine the compat/bare ratio (target 1.5, as benchmarks 4 and 6), and ClickHouse/SQLite for the
compat reads and for the bare reads. The compat frames of both engines are compared column by column (hashes).

    python benchmarks/bench_read_engines.py [--rows 1000000 --runs 100 --events 1000 --rounds 3] [--quick]
    python benchmarks/bench_read_engines.py --only logs
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_result, fresh_home, loadavg, machine, median, remove_home, table, verdict  # noqa: E402

TARGET = 1.5
ENGINES = ("sqlite", "clickhouse")
WORKLOADS = ("logs", "expdata")
PROTO = "@@ "   # prefix of the protocol lines a server prints; anything else is passed through

CH_LOGS_SQL = ("SELECT Timestamp, SeverityText, SeverityNumber, ScopeName, Body, ResourceAttributes['host.name'], "
               "LogAttributes['omegaml.levelno'] FROM {db}.otel_logs "
               "WHERE LogAttributes['omegaml.log.dataset'] = '.omega/logs' ORDER BY Timestamp")
CH_EXPDATA_SQL = ("SELECT Timestamp, LogAttributes['omegaml.run.id'], LogAttributes['omegaml.event'], "
                  "ResourceAttributes['host.name'], LogAttributes['omegaml.step'], LogAttributes['omegaml.key'], "
                  "LogAttributes['omegaml.value'] FROM {db}.otel_logs "
                  "WHERE ScopeName = 'omegaml.experiment' AND LogAttributes['omegaml.experiment'] = 'bench' "
                  "AND LogAttributes['omegaml.run.id'] != '' ORDER BY Timestamp")


# -- server side (one process per engine and workload) ------------------------------------------------------------
def _say(kind: str, **data) -> None:
    print(PROTO + json.dumps({"kind": kind, **data}, default=str), flush=True)


def _digest(df) -> dict[str, str]:
    """One hash per column, to compare the compat frames of two engines across processes."""
    import pandas as pd

    return {c: format(int(pd.util.hash_pandas_object(df[c].astype(str), index=False).sum()) & (2**64 - 1), "x")
            for c in df.columns}


def copy_sqlite_to(store, sqlite_path: Path, chunk: int = 100_000) -> dict[str, int]:
    """Every table of an embedded SQLite store into ``store`` (a ClickHouseStore) through ``store.write``."""
    from omegaml_otel._internal.stores import schema

    con = sqlite3.connect(sqlite_path)
    counts = {}
    try:
        for tbl in schema.TABLES:
            cols = ", ".join('"' + c + '"' for c in schema.columns(tbl))
            cur = con.execute(f'SELECT {cols} FROM {tbl} ORDER BY "{schema.TIME_COLUMN[tbl]}", rowid')
            n = 0
            while batch := cur.fetchmany(chunk):
                store.write(tbl, batch)
                n += len(batch)
            counts[tbl] = n
    finally:
        con.close()
    client = store._conn()
    for tbl in schema.TABLES:
        client.command(f"OPTIMIZE TABLE {store.database}.{tbl} FINAL")
    return counts


def serve(engine: str, workload: str, home: Path, args) -> int:
    """Fill (SQLite) or copy (ClickHouse) the store, warm up, then time rounds on request from stdin."""
    os.environ["OMTEL_HOME"] = str(home)
    sqlite_path = home / "telemetry.sqlite"
    if engine == "clickhouse":
        os.environ["OMTEL_STORE"] = f"chdb://{home / 'chdb'}"
    import pandas as pd

    import omegaml_otel as om
    from omegaml_otel._internal.stores import default_store

    store = default_store()
    t = time.perf_counter()
    if engine == "sqlite":
        if workload == "logs":
            from bench_read import fill as fill_logs
            filled = fill_logs(om, store, args.rows)
        else:
            from bench_expdata import fill as fill_exp
            fill_exp(om, args.runs, args.events)
            con = sqlite3.connect(sqlite_path)
            filled = con.execute("SELECT count(*) FROM otel_logs").fetchone()[0]
            con.close()
        size = f"{sqlite_path.stat().st_size / 1e6:,.0f} MB"
        how = "filled through the pipeline"
    else:
        counts = copy_sqlite_to(store, sqlite_path)
        filled = counts["otel_logs"]
        size = store._conn().query(
            "SELECT formatReadableSize(sum(bytes_on_disk)) FROM system.parts WHERE active AND database = "
            f"'{store.database}' AND table = 'otel_logs'").result_rows[0][0]
        how = "copied from SQLite with ClickHouseStore.write, OPTIMIZE FINAL"
    _say("filled", rows=filled, seconds=time.perf_counter() - t, size=size, how=how)

    if workload == "logs":
        def compat():
            return om.logger.dataset.get()
    else:
        exp = om.runtime.experiment("bench")

        def compat():
            return exp.data(run="all")

    sides = {"compat": compat}
    if engine == "sqlite":
        from bench_expdata import BARE_COLS as EXP_COLS
        from bench_expdata import BARE_SQL as EXP_SQL
        from bench_read import SAME_COLS as LOG_COLS
        from bench_read import SAME_SQL as LOG_SQL
        con = sqlite3.connect(sqlite_path)
        if workload == "logs":
            sides["bare"] = lambda: pd.DataFrame(con.execute(LOG_SQL).fetchall(), columns=LOG_COLS)
        else:
            sides["bare"] = lambda: pd.DataFrame(con.execute(EXP_SQL, ("bench",)).fetchall(), columns=EXP_COLS)
    else:
        import clickhouse_connect
        from chdb import session

        sql = (CH_LOGS_SQL if workload == "logs" else CH_EXPDATA_SQL).format(db=store.database)
        client = clickhouse_connect.get_client(dsn=f"chdb://{store.path}")
        chs = session.Session(store.path)
        sides["bare"] = lambda: client.query_df(sql)
        sides["chdb DataFrame"] = lambda: chs.query(sql, "DataFrame")

    names = list(sides)
    lengths = {}
    for s in names:   # warm-up: caches, first-use imports, provider creation
        df = sides[s]()
        lengths[s] = len(df)
        if s == "compat":
            digest = _digest(df)
            columns = list(df.columns)
        del df
    _say("ready", lengths=lengths, digest=digest, columns=columns)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        r = int(cmd[1])
        times = {}
        for s in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            t = time.perf_counter()
            df = sides[s]()
            times[s] = time.perf_counter() - t
            lengths[s] = len(df)
            del df
        _say("round", times=times, lengths=lengths)
    return 0


# -- parent --------------------------------------------------------------------------------------------------------
class Server:
    def __init__(self, engine: str, workload: str, home: Path, args):
        cmd = [sys.executable, __file__, "--serve", engine, workload, str(home), "--rows", str(args.rows),
               "--runs", str(args.runs), "--events", str(args.events)]
        self.engine = engine
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env={k: v for k, v in os.environ.items() if k != "OMTEL_STORE"})

    def expect(self, kind: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith(PROTO):
                msg = json.loads(line[len(PROTO):])
                if msg["kind"] != kind:
                    raise RuntimeError(f"{self.engine} server: expected {kind}, got {msg}")
                return msg
            print(f"#   [{self.engine}] {line}", end="")
        raise RuntimeError(f"{self.engine} server exited with code {self.proc.wait()} before {kind!r}")

    def round(self, r: int) -> dict:
        self.proc.stdin.write(f"round {r}\n")
        self.proc.stdin.flush()
        return self.expect("round")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_workload(workload: str, args) -> tuple[list[list], dict, bool]:
    home = fresh_home(f"engines-{workload}")
    servers: dict[str, Server] = {}
    ok = True
    try:
        ready = {}
        for engine in ENGINES:   # SQLite fills first; the ClickHouse server copies its file
            servers[engine] = srv = Server(engine, workload, home, args)
            filled = srv.expect("filled")
            print(f"# {workload} / {engine}: {filled['rows']:,} otel_logs rows {filled['how']} in "
                  f"{filled['seconds']:.1f}s ({filled['size']})")
            ready[engine] = srv.expect("ready")
        times: dict[str, dict[str, list[float]]] = {e: {} for e in ENGINES}
        lengths: dict[str, dict[str, int]] = {}
        for r in range(args.rounds):
            for engine in (ENGINES if r % 2 == 0 else ENGINES[::-1]):
                res = servers[engine].round(r)
                for side, t in res["times"].items():
                    times[engine].setdefault(side, []).append(t)
                lengths[engine] = res["lengths"]
    finally:
        for srv in servers.values():
            srv.close()
        remove_home(home)

    # fidelity: same rows, same compat frame on both engines
    counts = {(e, s): n for e in ENGINES for s, n in lengths[e].items()}
    if len(set(counts.values())) != 1:
        print(f"# ROW COUNT MISMATCH: {counts}")
        ok = False
    da, db = ready["sqlite"]["digest"], ready["clickhouse"]["digest"]
    differ = [c for c in da if da[c] != db.get(c)]
    if ready["sqlite"]["columns"] != ready["clickhouse"]["columns"]:
        print(f"# COLUMNS DIFFER: {ready['sqlite']['columns']} vs {ready['clickhouse']['columns']}")
        ok = False
    print(f"# {workload}: compat frames of both engines "
          + ("identical (every column hashed)" if not differ else f"DIFFER in columns {differ}"))
    ok = ok and not differ

    med = {e: {s: median(v) for s, v in times[e].items()} for e in ENGINES}
    label = "dataset.get()" if workload == "logs" else "exp.data(run='all')"
    rows = []
    metrics = {}
    for e in ENGINES:
        ratio = med[e]["compat"] / med[e]["bare"]
        per_round = ", ".join(f"{c / b:.2f}" for c, b in zip(times[e]["compat"], times[e]["bare"]))
        n = lengths[e]["compat"]
        rows.append([workload, e, f"{n:,}", med[e]["compat"], med[e]["bare"], ratio, per_round,
                     f"<= {TARGET}  {verdict(ratio, TARGET)}"])
        metrics[f"{workload}_{e}_compat_s"] = med[e]["compat"]
        metrics[f"{workload}_{e}_bare_s"] = med[e]["bare"]
        metrics[f"{workload}_{e}_ratio"] = ratio
    if "chdb DataFrame" in med["clickhouse"]:
        metrics[f"{workload}_clickhouse_chdb_df_s"] = med["clickhouse"]["chdb DataFrame"]
    metrics[f"{workload}_ch_vs_sqlite_compat"] = med["clickhouse"]["compat"] / med["sqlite"]["compat"]
    metrics[f"{workload}_ch_vs_sqlite_bare"] = med["clickhouse"]["bare"] / med["sqlite"]["bare"]
    print(f"# {workload}: {label}, ClickHouse / SQLite: compat {metrics[f'{workload}_ch_vs_sqlite_compat']:.2f}, "
          f"bare {metrics[f'{workload}_ch_vs_sqlite_bare']:.2f}; reference chdb Session.query(sql, 'DataFrame') "
          f"{med['clickhouse'].get('chdb DataFrame', float('nan')):.3f}s "
          f"(clickhouse-connect query_df {med['clickhouse']['bare']:.3f}s)")
    return rows, metrics, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="log dataset rows (logs)")
    ap.add_argument("--runs", type=int, default=100, help="experiment runs (expdata)")
    ap.add_argument("--events", type=int, default=1000, help="events per run, start and stop included (expdata)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of: " + ", ".join(WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 20 runs x 200 events, 2 rounds")
    ap.add_argument("--serve", nargs=3, metavar=("ENGINE", "WORKLOAD", "HOME"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve[0], args.serve[1], Path(args.serve[2]), args)
    if args.quick:
        args.rows, args.runs, args.events, args.rounds = 100_000, 20, 200, 2
    workloads = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    if any(w not in WORKLOADS for w in workloads):
        ap.error(f"--only takes {', '.join(WORKLOADS)}")
    print(f"# compat readers on SQLite and ClickHouse (chdb): logs {args.rows:,} rows, expdata {args.runs} runs x "
          f"{args.events} events, {args.rounds} rounds; {machine()}; load {loadavg()}")
    import chdb
    print(f"# chdb {chdb.__version__} (ClickHouse engine {chdb.engine_version}), sqlite {sqlite3.sqlite_version}")
    rows, metrics, ok = [], {}, True
    for w in workloads:
        r, m, good = run_workload(w, args)
        rows += r
        metrics.update(m)
        ok = ok and good
    print(table(["workload", "engine", "rows", "compat s", "bare s", "compat/bare", "per round", "target"], rows))
    print(f"# load now {loadavg()}")
    if not ok:
        return 1
    emit_result("read_engines", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
