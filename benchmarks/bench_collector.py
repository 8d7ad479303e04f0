"""Log throughput on the production path: two worker processes → OTLP/HTTP → rotel → ClickHouse, zero loss.

Every component is the one the end-to-end test (``tests/test_collector_e2e.py``) runs:

- the sink: ``tests/support/chsink.py`` (a process that owns a chdb folder and speaks the ClickHouse HTTP protocol:
  rotel's ``INSERT … FORMAT RowBinary``, lz4-compressed, and queries);
- rotel: the ``rotel-agent`` binary of the PyPI wheel, configured by ``collector-config/rotel/rotel.env`` (batch
  size, batch timeout, lz4, async insert, …) with the endpoints, user and password replaced by local ones;
  ``--batch-max-size``/``--batch-timeout`` here override the file's values;
- an ``omtel worker`` (prefork, concurrency 2) with ``OTEL_{LOGS,TRACES,METRICS}_EXPORTER=otlp``,
  ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<rotel's HTTP port>`` and ``OMTEL_IMPORTS=bench_tasks``.

As in ``bench_throughput.py``, each round sends two ``bench.log_burst`` tasks at once; each logs N INFO records
through Python logging in its own pool child (the worker's root-logger bridge or, alternating, the task logging
mode of ``om.runtime.mode(logging=True)``). Wall time runs from sending the two tasks until all 2N rows are
counted in the sink's ``otel.otel_logs`` (a ``count()`` over HTTP every 0.1 s); records/s = 2N / wall time.
Zero loss: the count must equal 2N (stragglers get 30 s without progress before a record counts as lost). Each
task also reports what its process's export buffer dropped (``ExportBuffer(block=False)`` drops the oldest
records beyond ``OMTEL_MAX_QUEUE`` pending ones on the collector path) and how many were still queued when the
task returned. The CPU seconds used per round by the pool children, rotel and the sink are reported too.

    python benchmarks/bench_collector.py [--records 100000 --rounds 3] [--quick]
    python benchmarks/bench_collector.py --blrp-delay 5000 --batch-timeout 1s     # other settings
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    emit_result,
    fresh_home,
    loadavg,
    machine,
    median,
    pythonpath,
    remove_home,
    table,
    verdict,
)

TARGET = 20_000
MODES = ("root bridge", "log dataset")
REPO = BENCH_DIR.parent
ROTEL_ENV = REPO / "collector-config" / "rotel" / "rotel.env"
SINK = REPO / "tests" / "support" / "chsink.py"
sys.path.insert(0, str(REPO / "tests" / "support"))
from collector_path import free_port, stop, wait_listening  # noqa: E402  (the tests' process helpers)


def rotel_env(otlp_http: int, otlp_grpc: int, sink_port: int, batch_size: int | None,
              batch_timeout: str | None) -> dict[str, str]:
    """``rotel.env`` as rotel-agent reads it, with local endpoints (the sink ignores user and password)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
    for line in ROTEL_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    env.update(ROTEL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{otlp_http}", ROTEL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{otlp_grpc}",
               ROTEL_CLICKHOUSE_EXPORTER_ENDPOINT=f"http://127.0.0.1:{sink_port}",
               ROTEL_CLICKHOUSE_EXPORTER_USER="default", ROTEL_CLICKHOUSE_EXPORTER_PASSWORD="")
    if batch_size:
        env["ROTEL_BATCH_MAX_SIZE"] = str(batch_size)
    if batch_timeout:
        env["ROTEL_BATCH_TIMEOUT"] = batch_timeout
    return env


def sink_count(port: int, names: list[str]) -> int:
    sql = ("SELECT count() FROM otel.otel_logs WHERE ScopeName IN ("
           + ", ".join("'" + n.replace("'", "") + "'" for n in names) + ")")
    url = f"http://127.0.0.1:{port}/?query=" + urllib.parse.quote(sql)
    with urllib.request.urlopen(url, timeout=30) as resp:
        return int(resp.read().decode().strip())


def cpu_seconds(procs: dict[str, object]) -> dict[str, float]:
    out = {}
    for name, p in procs.items():
        try:
            t = p.cpu_times()
            out[name] = t.user + t.system
        except Exception:
            out[name] = float("nan")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000, help="records per task (2 tasks per round)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per capture path")
    ap.add_argument("--blrp-delay", type=int, default=200,
                    help="OTEL_BLRP_SCHEDULE_DELAY of the worker, ms (the SDK's default is 5000)")
    ap.add_argument("--max-queue", type=int, default=None, help="OMTEL_MAX_QUEUE of the worker (default: its own)")
    ap.add_argument("--batch-size", type=int, default=None, help="rotel --batch-max-size (default: rotel.env's)")
    ap.add_argument("--batch-timeout", default=None, help="rotel --batch-timeout (default: rotel.env's)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of: " + ", ".join(MODES))
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 x 20,000 per path")
    args = ap.parse_args()
    if args.quick:
        args.records, args.rounds = 20_000, 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in MODES for m in modes):
        ap.error(f"--modes takes {', '.join(MODES)}")

    import psutil
    import rotel
    import rotel.__about__

    home = fresh_home("collector")
    os.chdir(home)  # the filesystem transport writes its control/ folder into the worker's cwd
    sink_port, otlp_http, otlp_grpc = free_port(), free_port(), free_port()
    renv = rotel_env(otlp_http, otlp_grpc, sink_port, args.batch_size, args.batch_timeout)
    wenv = dict(os.environ, OMTEL_IMPORTS="bench_tasks", PYTHONPATH=pythonpath(BENCH_DIR),
                OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_http}",
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_BLRP_SCHEDULE_DELAY=str(args.blrp_delay), OTEL_BSP_SCHEDULE_DELAY=str(args.blrp_delay))
    if args.max_queue is not None:
        wenv["OMTEL_MAX_QUEUE"] = str(args.max_queue)
    n = args.records
    print(f"# collector log throughput: worker → OTLP/HTTP → rotel → chsink (chdb), 2 tasks x {n:,} records at "
          f"once, {args.rounds} round(s) per path; {machine()}; load {loadavg()}")
    agent = Path(rotel.__file__).parent / "rotel-agent"
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# {version} (PyPI rotel {rotel.__about__.__version__}), rotel.env with local endpoints: batch size "
          f"{renv['ROTEL_BATCH_MAX_SIZE']}, batch timeout {renv['ROTEL_BATCH_TIMEOUT']}, compression "
          f"{renv.get('ROTEL_CLICKHOUSE_EXPORTER_COMPRESSION')}, async insert "
          f"{renv.get('ROTEL_CLICKHOUSE_EXPORTER_ASYNC_INSERT')}; worker OTEL_BLRP_SCHEDULE_DELAY={args.blrp_delay} "
          f"ms, OMTEL_MAX_QUEUE={wenv.get('OMTEL_MAX_QUEUE', 'default')}")

    import omegaml_otel as om
    from omegaml_otel.worker import worker_process

    logs = {name: open(home / f"{name}.log", "w") for name in ("sink", "rotel", "worker")}
    sink = rot = None
    results: dict[str, list[dict]] = {m: []for m in modes}
    try:
        sink = subprocess.Popen([sys.executable, str(SINK), str(sink_port), str(home / "chdb")],
                                env=dict(os.environ), stdout=logs["sink"], stderr=subprocess.STDOUT)
        wait_listening(sink_port, 60, sink, "chsink")
        rot = subprocess.Popen([str(agent), "start"], env=renv,
                               stdout=logs["rotel"], stderr=subprocess.STDOUT)
        wait_listening(otlp_http, 30, rot, "rotel")
        with worker_process(concurrency=2, env=wenv, stderr=logs["worker"]) as worker:
            burst = om.runtime.task("bench.log_burst")
            for w in range(2):   # warm-up: both children import, create their providers, reach rotel
                om.runtime.mode(logging=bool(w))
                names = [f"bench.warm.{w}.{i}" for i in range(2)]
                [r.get(timeout=60) for r in [burst.delay(2000, name=name) for name in names]]
                deadline = time.monotonic() + 30
                while sink_count(sink_port, names) < 4000 and time.monotonic() < deadline:
                    time.sleep(0.1)
            procs = {"pool children": None, "rotel": psutil.Process(rot.pid), "sink": psutil.Process(sink.pid)}
            children = psutil.Process(worker.pid).children(recursive=True)
            for r in range(args.rounds):
                for mode in (modes if r % 2 == 0 else modes[::-1]):
                    om.runtime.mode(logging=(mode == "log dataset"))
                    names = [f"bench.otlp.{mode.split()[1]}.{r}.{i}" for i in range(2)]
                    cpu0 = cpu_seconds({**procs, **{f"c{i}": c for i, c in enumerate(children)}})
                    t0 = time.perf_counter()
                    rs = [burst.delay(n, name=name) for name in names]
                    out = [res.get(timeout=300, interval=0.01) for res in rs]
                    t_got = time.perf_counter()
                    stored, last, t_last = 0, -1, time.monotonic()
                    while True:   # zero loss: wait for every row; 30 s without progress counts the rest lost
                        stored = sink_count(sink_port, names)
                        if stored >= 2 * n:
                            break
                        if stored != last:
                            last, t_last = stored, time.monotonic()
                        elif time.monotonic() - t_last > 30:
                            break
                        time.sleep(0.1)
                    t_stored = time.perf_counter()
                    cpu1 = cpu_seconds({**procs, **{f"c{i}": c for i, c in enumerate(children)}})
                    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0 if k != "pool children"}
                    cpu["pool children"] = sum(v for k, v in cpu.items() if k.startswith("c"))
                    res = {"wall": t_stored - t0, "logged": t_got - t0, "stored": stored, "sent": 2 * n,
                           "dropped": sum(o.get("dropped", 0) for o in out),
                           "pending": sum(o.get("pending", 0) for o in out),
                           "pids": len({o["pid"] for o in out}),
                           "cpu": {k: cpu[k] for k in ("pool children", "rotel", "sink")}}
                    results[mode].append(res)
                    print(f"#   {mode:12s} round {r}: {stored:,}/{2 * n:,} rows in {res['wall']:.2f}s "
                          f"({stored / res['wall']:,.0f}/s); tasks returned after {res['logged']:.2f}s with "
                          f"{res['pending']:,} records still queued, {res['dropped']:,} dropped; "
                          f"{res['pids']} pool processes; CPU s: " +
                          ", ".join(f"{k} {v:.1f}" for k, v in res["cpu"].items()), flush=True)
            om.runtime.mode(logging=False)
    finally:
        stop(rot, 20)
        stop(sink, 30)
        for f in logs.values():
            f.close()
    worker_log = (home / "worker.log").read_text(errors="replace")
    reported = [line for line in worker_log.splitlines() if "could not be exported" in line or "cannot export" in line]
    for line in reported[:5]:
        print(f"# worker: {line.strip()}")
    if sink.returncode not in (0, None):
        print(f"# sink exited with code {sink.returncode}: {(home / 'sink.log').read_text()[-2000:]}")

    rows, metrics = [], {}
    for mode in modes:
        res = results[mode]
        rates = [x["stored"] / x["wall"] for x in res]
        lost = sum(x["sent"] - x["stored"] for x in res)
        dropped = sum(x["dropped"] for x in res)
        rate = median(rates)
        rows.append([mode, len(res), f"{2 * n:,}", median([x["wall"] for x in res]),
                     median([x["logged"] for x in res]), rate, min(rates), max(rates), lost, dropped,
                     f">= {TARGET:,}  {verdict(rate, TARGET, higher_is_better=True) if not lost else 'LOST RECORDS'}"])
        key = mode.replace(" ", "_")
        metrics[f"{key}_per_s"] = rate
        metrics[f"{key}_lost"] = lost
        metrics[f"{key}_dropped"] = dropped
    print(table(["path", "rounds", "records/round", "median wall s", "tasks done s", "records/s (median)", "min",
                 "max", "lost", "dropped", "target"], rows))
    print(f"# load now {loadavg()}")
    remove_home(home)
    emit_result("collector", metrics)
    return 0 if not any(metrics[k] for k in metrics if k.endswith("_lost")) else 1


if __name__ == "__main__":
    sys.exit(main())
