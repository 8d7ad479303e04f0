"""The examples run: examples/quickstart.py with its own worker, and examples/own_celery_app under
``opentelemetry-instrument`` (a user's Celery app that imports nothing from omegaml_otel)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omegaml_otel.worker import stop_process

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env.update(extra)
    return env


@pytest.mark.slow
def test_quickstart(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path,
                          env=_env(OMTEL_HOME=str(tmp_path / "home")), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "print log" in proc.stdout
    assert "some message" in proc.stdout
    assert (tmp_path / "home" / "telemetry.sqlite").exists()


@pytest.mark.slow
def test_own_celery_app_under_opentelemetry_instrument(tmp_path):
    import omegaml_otel as om
    from omegaml_otel._internal.stores import open_store

    app_dir = EXAMPLES / "own_celery_app"
    assert "omegaml_otel" not in (app_dir / "theirapp.py").read_text()
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    home = tmp_path / "home"
    env = _env(OMTEL_HOME=str(home), THEIRAPP_DATA=str(tmp_path / "celery-data"))
    env.pop("PYTHONPATH", None)
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([instrument, "celery", "-A", "theirapp", "worker", "--concurrency=1",
                               "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                              cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = subprocess.run([instrument, sys.executable, "client.py"], cwd=app_dir, env=env,
                                capture_output=True, text=True, timeout=90)
        assert client.returncode == 0, client.stderr[-3000:]
        assert client.stdout.strip().splitlines()[-1] == "5"

        store = open_store(f"sqlite:///{home / 'telemetry.sqlite'}")
        deadline = time.monotonic() + 15
        while True:  # the worker's run span ends after the result is sent: it arrives a flush interval later
            spans = om.telemetry.spans(store=store, SpanName__in=["apply_async/theirapp.add", "run/theirapp.add"])
            if len(spans) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sorted(spans.SpanKind) == ["Consumer", "Producer"], spans[["SpanName", "SpanKind"]]
        assert spans.TraceId.nunique() == 1
        logs = om.telemetry.logs(store=store, attributes={"celery.task_name": "theirapp.add"})
        rows = {(r.ScopeName, r.Body) for r in logs.itertuples()}
        assert ("theirapp", "adding 2 and 3") in rows
        assert ("stdout", "the sum is 5") in rows
        printed = logs[logs.Body == "the sum is 5"].iloc[0]
        assert printed.LogAttributes["log.iostream"] == "stdout"
        assert printed.TraceId == spans.TraceId.iloc[0]
    finally:
        stop_process(worker)
        log.close()
