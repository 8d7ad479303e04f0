"""The documentation's code runs: every ```python block of docs/*.md, page by page, against the session worker.

Each page's blocks run in order in one fresh interpreter (``sys.executable``) that inherits this session's
environment, so they share its OMTEL_HOME (store and broker) and are answered by the ``worker`` fixture. A block
whose first line is ``# not run`` is skipped (for code that needs infrastructure CI does not have).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
SKIP_MARK = "# not run"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)

# executes the blocks in one namespace, naming the block and its line in docs/<page> when one fails
_RUNNER = r"""
import json, sys, traceback
page, blocks = json.load(sys.stdin)
ns = {"__name__": "__main__"}
for line, src in blocks:
    code = compile("\n" * (line - 1) + src, f"docs/{page}", "exec")
    try:
        exec(code, ns)
    except BaseException:
        traceback.print_exc()
        print(f"\nFAILED: the python block at docs/{page} line {line}", file=sys.stderr)
        sys.exit(1)
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first code line, code) of every ```python block not marked ``# not run``."""
    text = path.read_text()
    blocks = []
    for m in _FENCE.finditer(text):
        if m.group(1) != "python":
            continue
        code = m.group(2)
        if code.lstrip().startswith(SKIP_MARK):
            continue
        blocks.append((text.count("\n", 0, m.start(2)) + 1, code))
    return blocks


PAGES = sorted(DOCS.glob("*.md"))


def test_docs_exist():
    names = {p.name for p in PAGES}
    assert {"index.md", "logging.md", "configuration.md", "deployment.md", "experiments.md",
            "performance.md"} <= names
    assert python_blocks(DOCS / "logging.md"), "logging.md should have runnable examples"


@pytest.mark.slow
@pytest.mark.parametrize("page", [p.name for p in PAGES if python_blocks(p)])
def test_page_code_runs(page, worker):
    """Run from the project folder, as a reader who cloned it would (pages refer to examples/...)."""
    blocks = python_blocks(DOCS / page)
    proc = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps([page, blocks]),
                          capture_output=True, text=True, timeout=240, env=dict(os.environ),
                          cwd=DOCS.parent)
    assert proc.returncode == 0, f"docs/{page}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.mark.slow
def test_deployment_page_runs_with_opentelemetry_distro_installed(worker):
    """The deployment page again, in an environment that also has ``opentelemetry-distro`` and
    ``opentelemetry-exporter-otlp`` (tests/support/distro_venv.py): its ``opentelemetry-instrument`` example must
    store the same records as without them."""
    from distro_venv import bin_env, distro_venv  # local: builds a virtual environment on first use

    python = distro_venv()
    has = subprocess.run([str(python), "-c", "from importlib.metadata import version; "
                          "print(version('opentelemetry-distro'), version('opentelemetry-exporter-otlp'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(has) == 2
    page = "deployment.md"
    proc = subprocess.run([str(python), "-c", _RUNNER], input=json.dumps([page, python_blocks(DOCS / page)]),
                          capture_output=True, text=True, timeout=240, env=bin_env(python, dict(os.environ)),
                          cwd=DOCS.parent)
    assert proc.returncode == 0, f"docs/{page} with opentelemetry-distro:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def test_output_tables_are_not_python():
    """DataFrame output belongs in ```text blocks: a python block must not start with a printed table."""
    for page in PAGES:
        for line, code in python_blocks(page):
            first = code.lstrip().splitlines()[0] if code.strip() else ""
            assert not re.match(r"^(level|\d+\s+(SYSTEM|INFO))\b", first), f"{page.name}:{line}"


# -- configuration.md documents every setting that settings.py reads ------------------------------------------------

SETTINGS = Path(__file__).resolve().parent.parent / "src" / "omegaml_otel" / "settings.py"


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def test_configuration_lists_every_setting():
    source = SETTINGS.read_text()
    names = set(re.findall(r"[\"']((?:OMTEL|OTEL)_[A-Z0-9_]+|HOSTNAME)[\"']", source))
    if "OTEL_{signal.upper()}_EXPORTER" in source:
        names |= {f"OTEL_{s}_EXPORTER" for s in ("TRACES", "LOGS", "METRICS")}
    assert {"OMTEL_HOME", "OMTEL_STORE", "OMTEL_BROKER"} <= names
    rows = _table_rows((DOCS / "configuration.md").read_text())
    missing = sorted(names - set(rows))
    assert not missing, f"configuration.md lacks rows for {missing}"


def test_configuration_defaults_match(tmp_path):
    """The documented defaults are what settings() gives in an environment that sets nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMTEL_", "OTEL_"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", (
        "import json; from omegaml_otel.settings import settings; c = settings(); print(json.dumps(dict("
        "home=str(c.home), store=c.store_url, broker=c.broker_url, backend=c.result_backend, loglevel=c.loglevel, "
        "flush=c.flush_interval, queue=c.max_queue, polling=c.broker_polling, conc=c.worker_concurrency, "
        "exporters=c.exporters, protocol=c.otlp_protocols['logs'], imports=c.imports)))")],
        env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    cfg = json.loads(out)
    assert cfg["home"] == str(tmp_path / ".omegaml-otel")
    assert cfg["store"] == f"sqlite://{tmp_path}/.omegaml-otel/telemetry.sqlite"
    rows = {k: v[0] for k, v in _table_rows((DOCS / "configuration.md").read_text()).items()}
    assert "~/.omegaml-otel" in rows["OMTEL_HOME"]
    assert "sqlite:///$OMTEL_HOME/telemetry.sqlite" in rows["OMTEL_STORE"]
    assert cfg["broker"] in rows["OMTEL_BROKER"]
    assert cfg["backend"] == f"file://{tmp_path}/.omegaml-otel/results"
    assert "file://$OMTEL_HOME/results" in rows["OMTEL_RESULT_BACKEND"]
    for name, key in [("OMTEL_LOGLEVEL", "loglevel"), ("OMTEL_FLUSH_INTERVAL", "flush"),
                      ("OMTEL_MAX_QUEUE", "queue"), ("OMTEL_BROKER_POLLING", "polling"),
                      ("OMTEL_WORKER_CONCURRENCY", "conc"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "protocol")]:
        assert f"`{cfg[key]}`" in rows[name], (name, cfg[key], rows[name])
    for signal in ("traces", "logs", "metrics"):
        assert cfg["exporters"][signal] == ["omtel"]
        assert "`omtel`" in rows[f"OTEL_{signal.upper()}_EXPORTER"]
    assert cfg["imports"] == []
