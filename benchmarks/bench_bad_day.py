"""On a bad day: logging into a store that cannot be written, pings and exits with the collector down.

Three parts, each with its healthy baseline measured in the same run, the sides alternating round by round:

- ``logging``  -- one client process per side logs rounds of N records through a bridged Python logger
  (``om.logger.capture``, the final flush included) and rounds of ``om.logger.info()`` calls outside a task (each
  one flushes). Sides: ``healthy`` store; ``corrupt`` (telemetry.sqlite of random bytes); ``locked`` (this process
  holds the store with ``BEGIN EXCLUSIVE`` on a sqlite3 connection for the whole run); ``unwritable`` (the store
  path lies under a regular file). Reported: records/s, the ratio to the healthy side (target >= 1/3), and the
  records each side kept, dropped and reported at exit.
- ``ping``     -- ``omtel worker --concurrency 2 --max-tasks-per-child 1`` per side (every ping needs a fresh pool
  child, so every ping waits for a child's exit), and a client per side with the same settings pinging it.
  Sides: ``store`` (the embedded default); ``refused`` (every ``OTEL_*_EXPORTER=otlp`` to a port nobody listens
  on); ``hanging`` (to a listening socket that never reads). Reported: the median ping, its ratio to the store
  side (target for ``refused``: <= 2), and each worker's warm shutdown (SIGTERM until it exited).
- ``exit``     -- ``python -c "import omegaml_otel as om; om.logger.info('x')"`` against the same three
  destinations: the time its exit took (from the end of its code to its last atexit handler) and in all.

    python benchmarks/bench_bad_day.py [--records 100000 --simple 2000 --rounds 4 --pings 8] [--quick]
    python benchmarks/bench_bad_day.py --parts ping,exit     # only some parts
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, emit_result, loadavg, machine, median, pct, remove_home, table, verdict  # noqa: E402

REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO / "tests" / "support"))
from faults import clean_env, corrupt_store, hanging_listener, locked_store, otlp_env, refusing_port  # noqa: E402

LOG_SIDES = ("healthy", "corrupt", "locked", "unwritable")
PING_SIDES = ("store", "refused", "hanging")
LOG_TARGET = 1 / 3
PING_TARGET = 2.0
EXIT_CODE = """
import atexit, json, time
ended = []
atexit.register(lambda: print("RESULT " + json.dumps({"exit_s": time.monotonic() - ended[0]}), flush=True))
import omegaml_otel as om
om.logger.info("one record")
ended.append(time.monotonic())
"""


# -- client processes -----------------------------------------------------------------------------------------------
def logging_client() -> None:
    import logging

    import omegaml_otel as om
    from omegaml_otel._internal.export.pipeline import pipeline

    log = logging.getLogger("bench.badday")
    log.setLevel(logging.INFO)
    log.propagate = False
    with om.logger.capture(log):  # builds the pipeline and, where it can, the store
        log.info("warm-up")
    om.logger.info("warm-up")
    print("READY", flush=True)
    for line in sys.stdin:
        what, n = line.split()
        started = time.perf_counter()
        if what == "bridged":
            with om.logger.capture(log):
                for i in range(int(n)):
                    log.info("user %s processed item %d", "alice", i)
        else:
            for i in range(int(n)):
                om.logger.info(f"item {i}")
        seconds = time.perf_counter() - started
        buffer = pipeline().buffers["logs"]
        print(json.dumps({"s": seconds, "dropped": buffer.dropped, "pending": buffer.pending()}), flush=True)


def ping_client() -> None:
    import omegaml_otel as om

    deadline = time.monotonic() + 90
    while True:
        try:
            om.runtime.ping(timeout=10)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
    for _ in range(3):
        om.runtime.ping(timeout=30)
    print("READY", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            started = time.perf_counter()
            om.runtime.ping(timeout=30)
            times.append(time.perf_counter() - started)
        print(json.dumps(times), flush=True)


class Client:
    def __init__(self, kind: str, side: str, env: dict, home: Path):
        self.side, self.home = side, home
        self.err = open(home / f"client-{kind}.err", "w")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--client", kind], env=env,
                                     cwd=home, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True)

    def wait_ready(self) -> None:
        if self.proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"client {self.side!r} did not start (exit code {self.proc.poll()}); "
                               f"see {self.err.name}")

    def ask(self, cmd: str):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client {self.side!r} died (exit code {self.proc.poll()}); see {self.err.name}")
        return json.loads(line)

    def close(self) -> str:
        """End the client (its exit reports what it could not export); its stderr."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return Path(self.err.name).read_text(errors="replace")


def _lost(stderr: str) -> tuple[int, int]:
    """(records reported lost, of which dropped) from a process's exit report on stderr."""
    found = re.findall(r"(\d+) logs records could not be exported \((\d+) dropped", stderr)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


# -- the three parts -------------------------------------------------------------------------------------------------
def bench_logging(args, base: Path) -> dict:
    homes = {side: base / f"log-{side}" for side in LOG_SIDES}
    corrupt_store(homes["corrupt"])
    (base / "a-file").write_text("the store cannot be created under a file")
    homes["unwritable"] = base / "a-file" / "home"
    clients, times, simple, state = {}, {s: [] for s in LOG_SIDES}, {s: [] for s in LOG_SIDES}, {}
    with ExitStack() as stack:
        for side in LOG_SIDES:
            cwd = homes[side] if side != "unwritable" else base
            cwd.mkdir(parents=True, exist_ok=True)
            clients[side] = Client("logging", side, clean_env(OMTEL_HOME=str(homes[side]),
                                                              PYTHONPATH=os.environ.get("PYTHONPATH", "")), cwd)
        for c in clients.values():
            c.wait_ready()
        stack.enter_context(locked_store(homes["locked"] / "telemetry.sqlite"))
        for r in range(args.rounds):
            order = LOG_SIDES[r % 4:] + LOG_SIDES[:r % 4]
            for side in order:
                out = clients[side].ask(f"bridged {args.records}")
                times[side].append(out["s"])
                out = clients[side].ask(f"simple {args.simple}")
                simple[side].append(out["s"])
                state[side] = out
        stderr = {side: c.close() for side, c in clients.items()}  # the locked store is released after the exits
    healthy = median(times["healthy"])
    rows, result = [], {}
    for side in LOG_SIDES:
        rate = args.records / median(times[side])
        simple_rate = args.simple / median(simple[side])
        ratio = healthy / median(times[side])
        lost, dropped = _lost(stderr[side])
        failures = stderr[side].count("cannot export logs (")
        target = "baseline" if side == "healthy" else f">= 0.33  {verdict(ratio, LOG_TARGET, True)}"
        rows.append([side, rate, ratio, simple_rate, state[side]["pending"], state[side]["dropped"], lost,
                     failures, target])
        result[f"{side}_per_s"] = rate
        result[f"{side}_simple_per_s"] = simple_rate
        result[f"{side}_lost"] = lost
        result[f"{side}_dropped"] = dropped
        if side != "healthy":
            result[f"ratio_{side}"] = ratio
            result[f"slowdown_{side}"] = 1 / ratio  # time per record: the form run_all.py compares (<= 3)
    print(table(["store", "bridged rec/s", "ratio vs healthy", "om.logger.info/s", "kept at end", "dropped",
                 "reported lost at exit", "failure lines", "target"], rows,
                title=f"# logging: {args.rounds} rounds x ({args.records:,} bridged records + {args.simple:,} "
                      "om.logger.info calls) per side; rates are medians over rounds"))
    return result


def _worker(env: dict, home: Path) -> subprocess.Popen:
    log = open(home / "worker.log", "w")
    return subprocess.Popen([sys.executable, "-m", "omegaml_otel.cli", "worker", "--concurrency=2",
                             "--max-tasks-per-child=1"], env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=log)


def _stop(proc: subprocess.Popen) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - started


def bench_ping(args, base: Path, ports: dict) -> dict:
    homes = {side: base / f"ping-{side}" for side in PING_SIDES}
    workers, clients, times, shutdown = {}, {}, {s: [] for s in PING_SIDES}, {}
    try:
        for side in PING_SIDES:
            homes[side].mkdir(parents=True)
            env = clean_env(OMTEL_HOME=str(homes[side]), PYTHONPATH=os.environ.get("PYTHONPATH", ""),
                            **(otlp_env(ports[side]) if side != "store" else {}))
            workers[side] = _worker(env, homes[side])
            clients[side] = Client("ping", side, env, homes[side])
        for c in clients.values():
            c.wait_ready()
        for r in range(args.rounds):
            order = PING_SIDES[r % 3:] + PING_SIDES[:r % 3]
            for side in order:
                times[side] += clients[side].ask(str(args.pings))
    finally:
        for c in clients.values():
            c.close()
        for side, w in workers.items():
            shutdown[side] = _stop(w) if w.poll() is None else float("nan")
    base_ms = median(times["store"]) * 1e3
    rows, result = [], {}
    for side in PING_SIDES:
        t = times[side]
        ratio = median(t) * 1e3 / base_ms
        log = (homes[side] / "worker.log").read_text(errors="replace")
        reports = len(re.findall(r"records could not be exported", log))
        target = {"store": "baseline", "refused": f"<= {PING_TARGET}  {verdict(ratio, PING_TARGET)}"}.get(side, "")
        rows.append([side, len(t), median(t) * 1e3, sum(t) / len(t) * 1e3, pct(t, 0.9) * 1e3, ratio, shutdown[side],
                     reports, target])
        result[f"{side}_ping_ms"] = median(t) * 1e3
        result[f"{side}_ping_mean_ms"] = sum(t) / len(t) * 1e3
        result[f"{side}_shutdown_s"] = shutdown[side]
        if side != "store":
            result[f"ratio_ping_{side}"] = ratio
            # pings either find a child waiting (about 20 ms here) or wait for Celery to replace one: the median
            # falls on either side, the mean weighs both
            result[f"ratio_ping_mean_{side}"] = sum(t) / len(t) / (sum(times["store"]) / len(times["store"]))
    print(table(["collector", "pings", "median ms", "mean ms", "p90 ms", "ratio vs store", "warm shutdown s",
                 "loss reports in worker log", "target"], rows,
                title=f"# ping: omtel worker --concurrency 2 --max-tasks-per-child 1, {args.rounds} rounds x "
                      f"{args.pings} pings per side"))
    return result


def bench_exit(args, base: Path, ports: dict) -> dict:
    exit_s, wall = {s: [] for s in PING_SIDES}, {s: [] for s in PING_SIDES}
    for r in range(args.exits):
        for side in PING_SIDES:
            home = base / f"exit-{side}-{r}"
            home.mkdir(parents=True)
            env = clean_env(OMTEL_HOME=str(home), PYTHONPATH=os.environ.get("PYTHONPATH", ""),
                            **(otlp_env(ports[side]) if side != "store" else {}))
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-c", EXIT_CODE], env=env, cwd=home, capture_output=True,
                                  text=True, timeout=120)
            wall[side].append(time.monotonic() - started)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            exit_s[side].append(json.loads(line[-1][7:])["exit_s"] if line else float("nan"))
    rows, result = [], {}
    for side in PING_SIDES:
        rows.append([side, len(exit_s[side]), median(exit_s[side]), max(exit_s[side]), median(wall[side])])
        result[f"{side}_exit_s"] = median(exit_s[side])
    print(table(["collector", "runs", "exit s (median)", "exit s (max)", "whole process s"], rows,
                title="# exit: python -c \"import omegaml_otel as om; om.logger.info('x')\" (OMTEL_EXIT_TIMEOUT "
                      "default 2 s)"))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000, help="bridged records per side per round")
    ap.add_argument("--simple", type=int, default=2_000, help="om.logger.info calls per side per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--pings", type=int, default=8, help="pings per side per round")
    ap.add_argument("--exits", type=int, default=3, help="exit runs per side")
    ap.add_argument("--parts", default="logging,ping,exit", help="comma list of: logging, ping, exit")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 30,000 records, 4 pings")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        {"logging": logging_client, "ping": ping_client}[args.client]()
        return 0
    if args.quick:
        args.records, args.simple, args.rounds, args.pings, args.exits = 30_000, 500, 2, 4, 1
    base = Path(tempfile.mkdtemp(prefix="omtel-bench-badday-"))
    print(f"# bad day: failing stores, collector down; {machine()}; load {loadavg()}")
    parts = {p.strip() for p in args.parts.split(",")}
    result = {}
    try:
        if "logging" in parts:
            result.update(bench_logging(args, base))
        with hanging_listener() as hanging:
            ports = {"store": None, "refused": refusing_port(), "hanging": hanging}
            if "ping" in parts:
                result.update(bench_ping(args, base, ports))
            if "exit" in parts:
                result.update(bench_exit(args, base, ports))
    finally:
        remove_home(base)
    print(f"# load at the end {loadavg()}")
    emit_result("bad_day", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
