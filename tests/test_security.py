"""Security on a bad day, end to end: no code from telemetry, no passwords shown, private files, clear failures.

Everything is real: planted records come from another process through the SDK and the ``omtel`` exporter, files are
checked on disk under a 0022 umask, the worker is a real ``omtel worker`` subprocess, Redis is a real redis-server.
Tests that need other settings run a fresh interpreter with their own environment (``run_script``).
"""
from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import SUPPORT

SECRET = "s3cret-Pa55"


def run_script(code: str, env_update: dict, timeout: float = 90) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``code`` in a fresh interpreter without this session's OMTEL_*/OTEL_* settings; returns the process
    and the JSON of its last 'RESULT ' line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(env_update)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc, (json.loads(lines[-1][len("RESULT "):]) if lines else {})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- 1. no code from telemetry ---------------------------------------------------------------------------------------
def _plant(experiment: str, name: str, marker: Path, how: str) -> None:
    subprocess.run([sys.executable, str(SUPPORT / "plant_record.py"), experiment, name, str(marker), how],
                   check=True, timeout=60, capture_output=True)


def test_planted_pickle_records_never_run(om, tmp_path):
    """Records planted by another process (inline pickle; a made-up signature over a planted file) are refused by
    restore_artifacts() and the code they carry never runs; the genuine artifact next to them round-trips."""
    exp = om.runtime.experiment(_name("planted"))
    with exp:
        exp.log_artifact({"genuine", "set"}, "model")
    marker = tmp_path / "code-ran"
    _plant(exp.name, "inline", marker, "inline")
    _plant(exp.name, "forged", marker, "forged")
    assert exp.restore_artifacts(name="model") == [{"genuine", "set"}]
    # the planted records carry a run id of their own, outside the current run (restore's default, as omega-ml's)
    with pytest.raises(om.ArtifactError, match="artifact 'inline' carries pickle data inside the telemetry record"):
        exp.restore_artifacts(name="inline", run="all")
    with pytest.raises(om.ArtifactError, match="artifact 'forged': the file .* fails its signature check"):
        exp.restore_artifacts(name="forged", run="all")
    with pytest.raises(om.ArtifactError):
        exp.restore_artifacts(run="all")  # everything, the planted records included
    assert not marker.exists()
    # what the genuine record carries: no pickled bytes, only the reference
    values = {v["name"]: v for v in exp.data(run="all", event="artifact").value}
    assert sorted(values["model"]) == ["format", "name", "sha256", "signature"]


def test_tampered_artifact_file_is_refused(om, omtel_home, tmp_path):
    exp = om.runtime.experiment(_name("tampered"))
    with exp:
        exp.log_artifact(range(3), "r")
    ref = exp.data(event="artifact").value.iloc[0]
    path = omtel_home / "artifacts" / ref["sha256"][:2] / ref["sha256"]
    assert _mode(path) == 0o600 and exp.restore_artifacts(name="r") == [range(3)]
    marker = tmp_path / "code-ran"
    planted = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import pickle, sys
        class P:
            def __reduce__(self):
                return open, ({str(marker)!r}, "w")
        sys.stdout.buffer.write(pickle.dumps(P()))""")], capture_output=True, check=True).stdout
    path.write_bytes(planted)
    with pytest.raises(om.ArtifactError, match="fails its signature check"):
        exp.restore_artifacts(name="r")
    assert not marker.exists()


def test_artifacts_logged_on_the_worker_restore_on_the_client(worker, om):
    """A job on the worker logs a pickled artifact; the worker signs with the installation's key (same OMTEL_HOME),
    and the client verifies and restores it."""
    name = _name("worker-artifact")
    om.jobs.put(textwrap.dedent(f"""
        import omegaml_otel as om
        exp = om.runtime.experiment({name!r})
        exp.start()
        exp.log_artifact({{1, 2, 3}}, "from-worker")
        exp.stop()
        """), name)
    om.runtime.job(name).run().get(timeout=60)
    assert om.runtime.experiment(name).restore_artifacts(name="from-worker") == [{1, 2, 3}]


# -- 2. the smaller defects ------------------------------------------------------------------------------------------
def test_mistyped_store_scheme_never_shows_the_password(tmp_path):
    proc, result = run_script("""
        import json
        import omegaml_otel as om
        from omegaml_otel.settings import settings
        out = {"repr": repr(settings())}
        om.logger.info("x")                      # must not raise: the store cannot be opened
        try:
            om.logger.dataset.get()
        except om.StoreError as exc:
            out["error"] = str(exc)
        print("RESULT " + json.dumps(out))
    """, {"OMTEL_HOME": str(tmp_path), "OMTEL_STORE": f"clickhose://u:{SECRET}@h/otel",
          "OMTEL_BROKER": f"redis://:{SECRET}@r:6379/0", "OMTEL_EXIT_TIMEOUT": "0.5"})
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "clickhose://u:***@h/otel" in result["repr"] and "redis://:***@r:6379/0" in result["repr"]
    assert "store URL 'clickhose://u:***@h/otel' is not supported" in result["error"]


def test_store_with_a_password_is_opened_once(tmp_path):
    """The cache of default_store() is keyed by the URL as given, not by the store's masked url (before: every read
    opened a new ClickHouseStore, 2 clients and 10 DESCRIBE TABLE each). No server is needed: nothing connects."""
    proc, result = run_script("""
        import json
        from omegaml_otel._internal.stores import default_store
        first = default_store()
        print("RESULT " + json.dumps({"same": [default_store() is first for _ in range(10)], "url": first.url}))
    """, {"OMTEL_HOME": str(tmp_path), "OMTEL_STORE": f"clickhouse://u:{SECRET}@127.0.0.1:9/otel"})
    assert proc.returncode == 0, proc.stderr
    assert result == {"same": [True] * 10, "url": "clickhouse://u:***@127.0.0.1:9/otel"}


def test_now_and_today_are_utc_in_another_time_zone(tmp_path):
    """With TZ=America/New_York, 'now' was read as local time, 5 h before the UTC times stored: 0 of 3 rows."""
    proc, result = run_script("""
        import json, time
        import omegaml_otel as om
        for i in range(3):
            om.logger.info(f"row {i}")
        time.sleep(0.01)
        ds = om.logger.dataset
        print("RESULT " + json.dumps({"all": len(ds.get(level="INFO")), "end_now": len(ds.get(level="INFO", end="now")),
                                      "since_today": len(ds.get(level="INFO", since="today")),
                                      "since_now": len(ds.get(level="INFO", since="now")),
                                      "offset": time.localtime().tm_gmtoff}))
    """, {"OMTEL_HOME": str(tmp_path), "TZ": "America/New_York"})
    assert proc.returncode == 0, proc.stderr
    assert result["offset"] < 0  # the zone really is behind UTC here
    assert result == {**result, "all": 3, "end_now": 3, "since_now": 0}
    # 'today' starts at 00:00 UTC: the rows are of today unless the clock just passed midnight
    assert result["since_today"] in (3, 0)


def test_out_of_range_since_is_a_clear_error(om):
    with pytest.raises(ValueError, match=r"^since='99999999999y' is out of range"):
        om.logger.dataset.get(since="99999999999y")
    with pytest.raises(ValueError, match=r"^since='99999999999y' is out of range"):
        om.telemetry.logs(since="99999999999y")


def test_in_filter_of_a_string_is_an_error(om):
    with pytest.raises(ValueError, match=r"Body__in='hx' needs a list of values, e.g. Body__in=\['hx'\]"):
        om.telemetry.logs(Body__in="hx")


def test_unprintable_message_is_kept_with_a_placeholder(om):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no str for you")

    om.logger.reset()
    om.logger.info(Unprintable())  # must not raise
    om.logger.info("after")
    df = om.logger.dataset.get(level="INFO")
    assert list(df.msg) == ["<unprintable Unprintable object: str() raised RuntimeError: no str for you>", "after"]


@pytest.mark.parametrize("exporters", ["omtel", "none"], ids=["embedded-store", "filesystem-broker"])
def test_worker_with_unwritable_home_exits_with_one_line(tmp_path, exporters):
    """OMTEL_HOME under a plain file cannot be created, even by root (which ignores permission bits)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update({"OMTEL_HOME": str(blocker / "home"), **{f"OTEL_{s}_EXPORTER": exporters
                                                         for s in ("TRACES", "LOGS", "METRICS")}})
    proc = subprocess.run([sys.executable, "-m", "omegaml_otel.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("omtel") and "OMTEL_HOME" in lines[0] and str(blocker / "home") in lines[0]
    assert "Traceback" not in proc.stderr


# -- 3. private files ------------------------------------------------------------------------------------------------
def test_files_under_omtel_home_are_private_under_umask_0022(tmp_path):
    home = tmp_path / "home"
    proc, result = run_script("""
        import json, os, stat
        os.umask(0o022)
        import omegaml_otel as om
        from omegaml_otel.settings import settings
        home = settings().home
        om.logger.info("x")
        om.logger.dataset.get()                       # the store is open: -wal and -shm exist now
        om.runtime.task("omegaml.tasks.omega_ping").delay()   # broker folders, a message in the queue
        om.jobs.put("print(1)", "reports/daily")
        exp = om.runtime.experiment("private")
        with exp:
            exp.log_artifact({1, 2}, "a-set")
        modes = {str(p.relative_to(home)): oct(stat.S_IMODE(p.stat().st_mode)) for p in home.rglob("*")}
        print("RESULT " + json.dumps({"home": oct(stat.S_IMODE(home.stat().st_mode)), "modes": modes}))
    """, {"OMTEL_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    modes = result["modes"]
    assert result["home"] == "0o700"
    for name in ("telemetry.sqlite", "telemetry.sqlite-wal", "telemetry.sqlite-shm", "artifacts.key"):
        assert modes[name] == "0o600", (name, modes)
    for name in ("results", "broker", "broker/queue", "broker/processed", "jobs", "jobs/reports", "artifacts"):
        assert modes[name] == "0o700", (name, modes)
    artifact_files = [n for n in modes if n.startswith("artifacts/") and n.count("/") == 2]
    assert len(artifact_files) == 1 and modes[artifact_files[0]] == "0o600"
    assert modes["jobs/reports/daily.py"] == "0o600"
    # nothing under home is open to others: every file sits in a 0700 folder (message files may be 0644)
    folders = [n for n in modes if (home / n).is_dir()]
    assert folders and all(modes[n] == "0o700" for n in folders), modes


# -- the compose file's Redis set-up, for real -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compose_redis() -> tuple[list[str], str]:
    """The redis service's command and the worker's broker URL from docker-compose.yaml, each ``${VAR:-default}``
    read as its default (what compose does without a .env file)."""
    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "collector-config" / "docker-compose.yaml")
                             .read_text())["services"]

    def interpolate(value: str) -> str:
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)

    return [interpolate(c) for c in compose["redis"]["command"]], interpolate(compose["worker"]["environment"]
                                                                              ["OMTEL_BROKER"])


def test_redis_broker_of_the_compose_file(tmp_path):
    """redis-server with the compose file's arguments (--requirepass), on 127.0.0.1: a client without the password
    is refused, and a worker and a client with the compose worker's broker URL (host and port changed) run a ping."""
    import redis

    command, broker = _compose_redis()
    port = _free_port()
    parts = urlsplit(broker)
    broker = parts._replace(netloc=f":{parts.password}@127.0.0.1:{port}").geturl()
    server = subprocess.Popen([*command, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                               "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        anonymous = redis.Redis(port=port, socket_connect_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                anonymous.ping()
                raise AssertionError("redis-server answered without the password")
            except redis.AuthenticationError:
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        proc, result = run_script("""
            import json
            import omegaml_otel as om
            from omegaml_otel.worker import worker_process
            with worker_process(concurrency=1, timeout=60):
                reply = om.runtime.ping(fox="bar", timeout=30)
            print("RESULT " + json.dumps({"kwargs": reply["kwargs"]}))
        """, {"OMTEL_HOME": str(tmp_path / "home"), "OMTEL_BROKER": broker}, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert result == {"kwargs": {"fox": "bar"}}
    finally:
        server.terminate()
        server.wait(10)
