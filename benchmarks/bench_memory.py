"""Worker memory and start-up: plain Celery, plain Celery under the stock OpenTelemetry SDK, and ``omtel worker``.

Four sides, each a prefork worker with concurrency 2 (``--concurrency``) on the same broker configuration (the
embedded filesystem broker; ``--broker``), started one at a time in an order shuffled every round, ``--rounds``
times each, and each pinged with the same four log lines per ping:

- ``plain``       -- ``celery -A plain_app worker``: the runtime's broker/backend config, no OpenTelemetry; its
  ping writes the four lines the plain way (``task_logs=True``: three loggers and a print, to the console);
- ``stock OTel``  -- ``celery -A stock_otel_app worker``: the same app with the upstream ``CeleryInstrumentor`` and
  the SDK's batch span and log record processors (console exporters to ``os.devnull``; see stock_otel_app.py),
  which capture the four lines as log records;
- ``omtel``       -- ``omtel worker`` (``python -m omegaml_otel.cli worker``), pinged with logging on (the four
  records stored before each result); its pool children write the store through the main process (stores/relay.py);
- ``omtel, no relay`` -- the same with ``OMTEL_STORE_RELAY=false``: each child opens the store itself. No target:
  it shows what the relay saves.

For each start the benchmark times start-up to the first answered ping (the ping is sent right after the process
starts; the filesystem broker keeps it until the worker takes it), sends ``--pings`` more pings, then reads PSS, USS
and RSS of the main process and of each pool child from ``/proc/<pid>/smaps_rollup`` (psutil). Figures are medians
over the rounds (start-up also as the best of the rounds: on a busy machine the median waits for CPU time as
much as for the worker); a child's figure is the mean of the children. A second table splits each child's PSS
into the pages only it has (of the malloc heap, and other anonymous memory), its share of the pages it still shares
with the main process, and libraries (``_breakdown``). It also lists which heavy libraries (numpy, pandas, pyarrow,
...) the omtel processes have mapped: none is the point of lean workers. The targets are the ``omtel`` side's.

    python benchmarks/bench_memory.py [--rounds 5 --pings 100] [--quick] [--concurrency 2] [--broker filesystem]

``--broker redis`` or ``amqp`` runs the workers on Redis or RabbitMQ (127.0.0.1, an empty database or a new virtual
host): Celery's pool for those brokers collects garbage before each fork, which changes what the children share.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil

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
    pythonpath,
    remove_home,
    table,
    verdict,
)

SIDES = ("plain", "stock OTel", "omtel", "omtel, no relay")
_FLAGS = ["--pool=prefork", "--loglevel=INFO", "-Q", "omegaml", "--without-gossip",
          "--without-mingle", "--without-heartbeat"]
COMMANDS = {
    "plain": ["celery", "-A", "plain_app", "worker", *_FLAGS],
    "stock OTel": ["celery", "-A", "stock_otel_app", "worker", *_FLAGS],
    "omtel": [sys.executable, "-m", "omegaml_otel.cli", "worker", "--queues=omegaml"],
}
COMMANDS["omtel, no relay"] = COMMANDS["omtel"]
#: what a side's worker gets in its environment beyond the benchmark's
SIDE_ENV = {"omtel, no relay": {"OMTEL_STORE_RELAY": "false"}}
#: targets: the omtel pool child's PSS against plain's and against stock OTel's; start-up against plain's
TARGET_CHILD_VS_PLAIN = 1.5
TARGET_CHILD_VS_STOCK = 1.0
TARGET_STARTUP = 1.5
HEAVY_LIBRARIES = ("/numpy/", "/pandas/", "/pyarrow/", "/matplotlib/", "/chdb/", "libarrow")
MB = 1024 * 1024


def _order(r: int) -> list[str]:
    """The sides in round ``r``, shuffled (the same for every run): a stopping worker's children still exit while
    the next worker starts, so no side may always start right after the same other side."""
    return random.Random(r).sample(SIDES, len(SIDES))


def _key(side: str) -> str:
    """A side's name in the RESULT line: ``omtel, no relay`` is ``omtel_no_relay``."""
    return side.replace(",", "").replace(" ", "_").lower()


def _memory(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    return {"pss": info.pss / MB, "uss": info.uss / MB, "rss": info.rss / MB, **_breakdown(pid)}


#: the parts of a process's PSS that ``_breakdown`` tells apart
PARTS = ("private heap", "private anon", "shared", "files")


def _breakdown(pid: int) -> dict[str, float]:
    """A process's PSS in parts (MB), from ``/proc/<pid>/smaps``: the pages only it has of the malloc heap
    (``[heap]``: C libraries such as SQLite, and Python objects over 512 bytes) and of anonymous memory (pymalloc's
    arenas, thread stacks and malloc arenas), its share of the heap and anonymous pages it still shares with the main
    process and its siblings (what the main process built before the fork), and file-backed pages (libraries)."""
    kib = dict.fromkeys(PARTS, 0)
    kind = "files"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line: range, perms, ..., path
            name = head[5] if len(head) > 5 else ""
            kind = "heap" if name == "[heap]" else "anon" if name in ("", "[stack]") else "files"
        elif head[0] == "Pss:":
            kib["files" if kind == "files" else "shared"] += int(head[1])
        elif head[0] in ("Private_Clean:", "Private_Dirty:") and kind != "files":
            kib["shared"] -= int(head[1])
            kib[f"private {kind}"] += int(head[1])
    return {part: value / 1024 for part, value in kib.items()}


def _heavy_libraries(pid: int) -> list[str]:
    paths = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return sorted({h.strip("/") for p in paths for h in HEAVY_LIBRARIES if h in p})


def _children(proc: subprocess.Popen, n: int, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        kids = [c.pid for c in psutil.Process(proc.pid).children()]
        if len(kids) >= n or time.monotonic() > deadline:
            return kids
        time.sleep(0.05)


def one_start(side: str, env: dict, pings: int, log, concurrency: int = 2) -> dict:
    """Start one worker, time its first answered ping, ping it ``pings`` times more, measure, stop it."""
    # imported after fresh_home() set OMTEL_HOME: settings are read once per process
    import omegaml_otel as om
    from omegaml_otel._internal.runtimes.app import celery_app
    from omegaml_otel._internal.runtimes.client import wait_for
    from omegaml_otel._internal.runtimes.worker import stop_process
    from omegaml_otel.tasks import PING

    if side.startswith("omtel"):
        om.runtime.mode(logging=True)

        def ping():
            return om.runtime.ping(timeout=60)
    else:
        def ping():  # a plain client's ping: the plain and stock workers know nothing of __logging
            return wait_for(celery_app().send_task(PING, kwargs={"task_logs": True}), 60)

    t0 = time.perf_counter()
    proc = subprocess.Popen([*COMMANDS[side], f"--concurrency={concurrency}"], env={**env, **SIDE_ENV.get(side, {})},
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        ping()
        startup = time.perf_counter() - t0
        for _ in range(pings):
            ping()
        kids = _children(proc, concurrency)
        main = _memory(proc.pid)
        child = [_memory(k) for k in kids]
        heavy = sorted({lib for pid in [proc.pid, *kids] for lib in _heavy_libraries(pid)})
    finally:
        stop_process(proc)
        om.runtime.mode(logging=False)
    mean = {k: sum(c[k] for c in child) / len(child) for k in ("pss", "uss", "rss", *PARTS)}
    return {"startup_s": startup, "main": main, "child": mean, "children": len(child), "heavy": heavy}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pings", type=int, default=100, help="pings after the first, before measuring")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 20 pings")
    ap.add_argument("--concurrency", type=int, default=2, help="pool children of every worker (the targets: 2)")
    ap.add_argument("--broker", choices=BROKERS, default="filesystem",
                    help="the broker every worker uses (the targets: filesystem)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.pings = 1, 20

    home = fresh_home("memory")  # before omegaml_otel is imported: every side shares this embedded home
    os.chdir(home)  # the filesystem transport writes a control/ folder into the cwd of its processes
    print(f"# worker memory and start-up, {args.rounds} round(s) x {len(SIDES)} sides, {args.pings} pings each, "
          f"concurrency {args.concurrency}, {args.broker} broker; {machine()}; load {loadavg()}")
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    with broker_urls(args.broker, 1) as (broker,), open(home / "workers.log", "w") as log:
        if broker:  # one channel for all: the workers run one at a time, and each drains its queue
            os.environ["OMTEL_BROKER"] = broker
        env = {**os.environ, "PYTHONPATH": pythonpath(BENCH_DIR)}
        for r in range(args.rounds):
            for side in _order(r):
                runs[side].append(one_start(side, env, args.pings, log, args.concurrency))

    def med(side: str, *path: str) -> float:
        values = []
        for run in runs[side]:
            v = run
            for p in path:
                v = v[p]
            values.append(v)
        return median(values)

    rows, result = [], {}
    plain_child, stock_child = med("plain", "child", "pss"), med("stock OTel", "child", "pss")
    plain_start = med("plain", "startup_s")
    for side in SIDES:
        key = _key(side)
        row = [side, med(side, "main", "pss"), med(side, "main", "rss"), med(side, "child", "pss"),
               med(side, "child", "uss"), med(side, "child", "rss"), med(side, "child", "pss") / plain_child,
               med(side, "startup_s"), med(side, "startup_s") / plain_start,
               min(run["startup_s"] for run in runs[side])]
        rows.append(row)
        result.update({f"{key}_main_pss_mb": row[1], f"{key}_main_rss_mb": row[2], f"{key}_child_pss_mb": row[3],
                       f"{key}_child_uss_mb": row[4], f"{key}_child_rss_mb": row[5], f"{key}_startup_s": row[7],
                       f"{key}_best_startup_s": row[9]})
    print(table(["side", "main PSS MB", "main RSS MB", "child PSS MB", "child USS MB", "child RSS MB",
                 "child PSS / plain", "start-up s", "start-up / plain", "best start-up s"], rows))
    print(table(["side", *(f"child {p} MB" for p in PARTS), "child PSS MB"],
                [[side, *(med(side, "child", p) for p in PARTS), med(side, "child", "pss")] for side in SIDES],
                title="each pool child's PSS in parts (medians; the parts of one child add up to its PSS)"))
    for side in SIDES:
        result.update({f"{_key(side)}_child_{p.replace(' ', '_')}_mb": med(side, "child", p)
                       for p in PARTS})
    omtel_child, omtel_start = med("omtel", "child", "pss"), med("omtel", "startup_s")
    result["ratio_child_pss_vs_plain"] = omtel_child / plain_child
    result["ratio_child_pss_vs_stock"] = omtel_child / stock_child
    result["ratio_startup_vs_plain"] = omtel_start / plain_start
    result["ratio_child_pss_no_relay_vs_stock"] = med("omtel, no relay", "child", "pss") / stock_child
    print(f"# omtel pool child PSS / plain: {result['ratio_child_pss_vs_plain']:.2f} (target <= "
          f"{TARGET_CHILD_VS_PLAIN}: {verdict(result['ratio_child_pss_vs_plain'], TARGET_CHILD_VS_PLAIN)})")
    print(f"# omtel pool child PSS / stock OTel: {result['ratio_child_pss_vs_stock']:.2f} (target <= "
          f"{TARGET_CHILD_VS_STOCK}: {verdict(result['ratio_child_pss_vs_stock'], TARGET_CHILD_VS_STOCK)})")
    print(f"# omtel start-up to first answered ping / plain: {result['ratio_startup_vs_plain']:.2f} (target <= "
          f"{TARGET_STARTUP}: {verdict(result['ratio_startup_vs_plain'], TARGET_STARTUP)})")
    print(f"# reference: pool child PSS with OMTEL_STORE_RELAY=false / stock OTel: "
          f"{result['ratio_child_pss_no_relay_vs_stock']:.2f}")
    for side in SIDES:
        heavy = sorted({lib for run in runs[side] for lib in run["heavy"]})
        print(f"# heavy libraries mapped by the {side} worker's processes: {', '.join(heavy) or 'none'}")
    result["omtel_heavy_libraries"] = len({lib for run in runs["omtel"] for lib in run["heavy"]})
    remove_home(home)
    emit_result("memory", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
