"""Task round trip: ``om.runtime.ping()`` (send + worker run + ``.get()``) instrumented vs a plain Celery app.

Five sides, measured in the same run, each by its own client process, in alternating blocks:

- ``logging on``  -- ``om.runtime.mode(logging=True); om.runtime.ping()`` against an ``omtel worker``
  (prefork, concurrency 2): producer/consumer spans, the task's 4 log lines (simple logger, two Python loggers,
  print) bridged and flushed to SQLite before the result is published;
- ``logging off`` -- the same client and worker with ``om.runtime.mode(logging=False)`` (spans, the worker's
  root-logger bridge, flush-before-result still active);
- ``plain``       -- ``benchmarks/plain_app.py``: same broker/backend config (``celery_config(settings())``), a
  ping task returning the same dict, started as ``celery -A plain_app worker --pool=prefork --concurrency=2`` with
  its own broker folder, and a client that imports no OpenTelemetry;
- ``plain, task logs`` -- the plain worker and client, the ping writing the same four lines as the logging-on
  side, the plain way (to the worker's console log). No target: it shows how much of the logging-on side's cost
  is the logging calls themselves, which a plain worker pays too when its task logs;
- ``stock otel``  -- the yardstick of what OpenTelemetry itself costs, without this package:
  ``benchmarks/stock_otel_app.py`` (plain_app under the SDK with upstream's Celery instrumentation, batch
  processors, the SDK's logging handler on the root logger, console exporters writing to ``os.devnull``) in the
  worker's pool children and in its client, which makes upstream's producer spans. No target: it shows how much of
  the instrumented sides' cost is upstream's span work and the SDK, which this package wraps.

``--broker`` picks the broker both workers use: the embedded ``filesystem`` broker (the default), ``redis``
(127.0.0.1:6379, an empty database for each worker, Redis results) or ``amqp`` (RabbitMQ at 127.0.0.1:5672, a
virtual host for each worker, ``rpc://`` results). The filesystem broker polls every 10 ms, which hides part of the
instrumentation's cost in the tick; Redis and RabbitMQ push each message, so there the cost shows in full.

Both workers run during the whole benchmark (on the filesystem broker each polls its folder every 10 ms), so the
idle cost of the other one is shared by all sides. The reported figure is the median round trip; ratios are
medians vs plain.

    python benchmarks/bench_roundtrip.py [--rounds 15 --block 20] [--quick] [--broker filesystem|redis|amqp]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    BROKERS,
    broker_urls,
    emit_result,
    fresh_home,
    loadavg,
    machine,
    median,
    pct,
    pythonpath,
    remove_home,
    table,
    verdict,
)

SIDES = ("plain", "plain, task logs", "stock otel", "logging off", "logging on")
#: the sides served by a worker of their own, each on its own broker channel (the two omtel sides share one)
OTHER_WORKERS = {"plain": "plain_app", "stock otel": "stock_otel_app"}
#: sides served by another side's worker
SHARED_WORKER = {"plain, task logs": "plain"}
TARGETS = {"logging on": 1.25, "logging off": 1.10}


# -- client side (a subprocess per side) -----------------------------------------------------------------------------
def client(side: str) -> None:
    if side in OTHER_WORKERS or side in SHARED_WORKER:
        if side == "stock otel":
            from stock_otel_app import app, instrument
            instrument()
        else:
            from plain_app import app, instrumenting_modules
        kwargs = {"task_logs": True} if side == "plain, task logs" else {}

        def ping():
            return app.send_task("omegaml.tasks.omega_ping", kwargs=kwargs).get(timeout=10, interval=0.01)
    else:
        import omegaml_otel as om

        om.runtime.mode(logging=(side == "logging on"))

        def ping():
            return om.runtime.ping()

    # wait for the worker (first ping may take a while), then a short warm-up
    deadline = time.monotonic() + 60
    while True:
        try:
            ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
    for _ in range(5):
        ping()
    print("READY", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "QUIT":
            break
        if cmd == "CHECK":
            mods = app.send_task("bench.plain_otel_modules").get(timeout=10, interval=0.01) if side == "plain" \
                else []
            print(json.dumps({"client": instrumenting_modules() if side == "plain" else [], "worker": mods}),
                  flush=True)
            continue
        times = []
        for _ in range(int(cmd)):
            t0 = time.perf_counter()
            ping()
            times.append(time.perf_counter() - t0)
        print(json.dumps(times), flush=True)


class Client:
    def __init__(self, side: str, env: dict):
        self.side = side
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--client", side], env=env,
                                     cwd=env["OMTEL_HOME"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_ready(self):
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"client {self.side!r} did not start (exit code {self.proc.poll()})")

    def ask(self, cmd: str):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client {self.side!r} died (exit code {self.proc.poll()})")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("QUIT\n")
                self.proc.stdin.flush()
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def task_durations(om, sides_by_pid: dict[int, str]) -> dict[str, float]:
    """Median duration of the worker's ``run/omegaml.tasks.omega_ping`` span per side, joined to the client's
    producer span by trace id (the client is told apart by its resource's process.pid)."""
    try:
        spans = om.telemetry.spans()
        prod = spans[spans["SpanName"] == "apply_async/omegaml.tasks.omega_ping"]
        side = prod["ResourceAttributes"].map(lambda r: sides_by_pid.get(int(r.get("process.pid", 0))))
        prod = prod.assign(side=side).dropna(subset=["side"])
        run = spans[spans["SpanName"] == "run/omegaml.tasks.omega_ping"]
        joined = run.merge(prod[["TraceId", "side"]], on="TraceId")
        return {k: g["Duration"].median() / 1e6 for k, g in joined.groupby("side")}
    except Exception as exc:  # informational only
        print(f"# (task span durations not available: {exc})")
        return {}


# -- driver --------------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", type=int, default=20, help="pings per side per round (sides alternate)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 rounds of 10")
    ap.add_argument("--broker", choices=BROKERS, default="filesystem", help="the broker both workers use")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client(args.client)
        return 0
    if args.quick:
        args.rounds, args.block = 3, 10
    with broker_urls(args.broker, 1 + len(OTHER_WORKERS)) as (om_broker, *other_brokers):
        return measure(args, om_broker, dict(zip(OTHER_WORKERS, other_brokers)))


def measure(args, om_broker: str | None, other_brokers: dict[str, str | None]) -> int:
    homes = {side: fresh_home("roundtrip-" + side.replace(" ", "-")) for side in OTHER_WORKERS}
    home = fresh_home("roundtrip")          # this process's OMTEL_HOME: the instrumented side
    if om_broker:
        os.environ["OMTEL_BROKER"] = om_broker   # before omegaml_otel is imported: this process pings the worker
    env_om = {**os.environ, "PYTHONPATH": pythonpath(BENCH_DIR)}
    envs = {side: {**env_om, "OMTEL_HOME": str(homes[side]),
                   **({"OMTEL_BROKER": other_brokers[side]} if other_brokers[side] else {})} for side in OTHER_WORKERS}
    # the filesystem transport writes a control/ folder into the cwd of every process that uses it: keep it in the
    # temporary homes (the omtel worker inherits this process's cwd)
    os.chdir(home)
    print(f"# task round trip on the {args.broker} broker, {args.rounds} rounds x {args.block} pings per side; "
          f"{machine()}; load {loadavg()}")

    from omegaml_otel._internal.runtimes.worker import stop_process, worker_process

    clients: list[Client] = []
    logs = {side: open(homes[side] / "worker.log", "w") for side in OTHER_WORKERS}
    om_log = open(home / "worker.log", "w")
    others = [subprocess.Popen(
        ["celery", "-A", app, "worker", "--pool=prefork", "--concurrency=2", "--loglevel=INFO",
         "-Q", "omegaml", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=envs[side], cwd=homes[side], stdout=subprocess.DEVNULL, stderr=logs[side])
        for side, app in OTHER_WORKERS.items()]
    crashed = None
    try:
        with worker_process(concurrency=2, env=env_om, stderr=om_log):
            clients = [Client(s, envs.get(SHARED_WORKER.get(s, s), env_om)) for s in SIDES]
            for c in clients:
                c.wait_ready()
            times: dict[str, list[float]] = {s: [] for s in SIDES}
            t_start = time.monotonic()
            for r in range(args.rounds):
                order = clients[r % len(clients):] + clients[:r % len(clients)]   # rotate who goes first
                for c in order:
                    times[c.side] += c.ask(str(args.block))
            elapsed = time.monotonic() - t_start
            check = clients[0].ask("CHECK")
            import omegaml_otel as om
            stored = len(om.logger.dataset.get())
            time.sleep(0.6)   # the clients' and the worker's span buffers flush every 0.2 s
            task_ms = task_durations(om, {c.proc.pid: c.side for c in clients if c.side in TARGETS})
    except RuntimeError as exc:
        crashed = exc
    finally:
        for c in clients:
            c.close()
        for proc in others:
            stop_process(proc)
        for log in logs.values():
            log.close()
        om_log.close()

    if crashed is not None:
        for name, folder in (("omtel", home), *homes.items()):
            log = (folder / "worker.log").read_text(errors="replace")
            if "Unrecoverable error: JSONDecodeError" in log:
                print(f"# FAILED: the {name} worker died reading a half-written broker message file (kombu "
                      "filesystem transport race, celery/kombu#1551: is runtimes/fstransport.py in use? see "
                      f"docs/performance.md). Worker log: {folder / 'worker.log'}")
                return 3
        raise crashed
    base = median(times["plain"])
    rows, result = [], {}
    for s in SIDES:
        t = times[s]
        ratio = median(t) / base
        target = TARGETS.get(s)
        rows.append([s, len(t), median(t) * 1e3, sum(t) / len(t) * 1e3, pct(t, 0.1) * 1e3, pct(t, 0.9) * 1e3, ratio,
                     f"<= {target}" if target else "", verdict(ratio, target) if target else
                     "baseline" if s == "plain" else "yardstick"])
        key = s.replace(", ", "_").replace(" ", "_")
        result[key + "_ms"] = median(t) * 1e3
        result[key + "_mean_ms"] = sum(t) / len(t) * 1e3
        if s != "plain":
            result["ratio_" + key] = ratio
    print(table(["side", "pings", "median ms", "mean ms", "p10 ms", "p90 ms", "ratio vs plain", "target", ""], rows))
    n_on = len(times["logging on"]) + 6   # + the client's ready/warm-up pings
    print(f"# {elapsed:.1f}s of pinging; log dataset rows stored by the logging-on side: {stored} "
          f"(4 per ping expected: >= {4 * n_on}, plus 'log init')")
    runtimes = {}
    for name, folder in (("plain (both plain sides)", homes["plain"]), ("stock otel", homes["stock otel"]),
                         ("omtel (on+off)", home)):
        found = re.findall(r"omega_ping\[[^]]+\] succeeded in ([0-9.e-]+)s", (folder / "worker.log").read_text())
        if found:
            runtimes[name] = median([float(x) for x in found]) * 1e3
    if runtimes:
        print("# Celery's own task runtime ('succeeded in', median): " + ", ".join(f"{k} {v:.2f} ms" for k, v in
                                                                               runtimes.items()))
    if task_ms:
        print("# worker-side task time (median duration of the run/omegaml.tasks.omega_ping span, incl. the log "
              "flush before the result is published): " + ", ".join(f"{k} {v:.2f} ms" for k, v in
                                                                  sorted(task_ms.items())))
        for k, v in task_ms.items():
            result["task_" + k.replace(" ", "_") + "_ms"] = v
    print(f"# instrumenting modules (plain_app.INSTRUMENTING) in the plain client: {len(check['client'])}, in a plain "
          f"worker child: {len(check['worker'])}")
    if check["client"] or check["worker"]:
        print("# WARNING: the plain side loaded instrumenting modules: " + ", ".join(check["client"] + check["worker"]))
    for folder in (home, *homes.values()):
        remove_home(folder)
    emit_result("roundtrip" if args.broker == "filesystem" else f"roundtrip_{args.broker}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
