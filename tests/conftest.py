"""Shared fixtures: one embedded home per test session and a real ``omtel worker`` (prefork) subprocess."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="omtel-test-"))
#: test helpers (tasks, scenarios, the collector path, a ClickHouse sink) live apart from the test files
SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))


def pytest_configure(config):
    # before anything reads settings: every process of this session (client and workers) shares this home
    os.environ["OMTEL_HOME"] = str(_HOME)
    os.environ["OMTEL_IMPORTS"] = "worker_tasks"
    # tests back-date experiment events (dt=...) and read them back; tests/test_retention.py prunes its own stores
    os.environ["OMTEL_RETENTION"] = "off"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SUPPORT), os.environ.get("PYTHONPATH")) if p)
    for var in ("OMTEL_STORE", "OMTEL_BROKER", "OMTEL_RESULT_BACKEND", "OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER",
                "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME"):
        os.environ.pop(var, None)
    from omegaml_otel.settings import reset_settings
    reset_settings()


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def omtel_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def worker(omtel_home):
    """A prefork ``omtel worker`` (concurrency 2) on the embedded default, shared by the session."""
    from omegaml_otel.worker import worker_process

    log = open(omtel_home / "worker.log", "w")
    with worker_process(concurrency=2, stderr=log) as proc:
        yield proc
    log.close()


@pytest.fixture
def om():
    """The package as users import it, with the runtime mode restored after each test."""
    import omegaml_otel as om

    yield om
    om.runtime.mode(local=False, logging=False)
    om.logger.setLevel("INFO")
