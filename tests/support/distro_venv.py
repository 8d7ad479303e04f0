"""A virtual environment with ``opentelemetry-distro`` and ``opentelemetry-exporter-otlp`` installed next to
omegaml-otel: what a newcomer gets from OpenTelemetry's getting-started pages.

It reuses the test environment's packages (a ``.pth`` file adds its site-packages, editable omegaml-otel included)
and installs only the two packages and what they add (the gRPC exporter, grpcio) from the package index, pinned to
the installed SDK and instrumentation versions. It is built once per machine and kept under the temporary folder;
the key of its folder changes with the test environment and the pins. Its own site-packages comes first on
``sys.path``, so ``opentelemetry-distro``'s entry points come before omegaml-otel's: the order that used to break.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib.metadata import version
from pathlib import Path

#: what the ``opentelemetry-instrument`` console script runs
_INSTRUMENT = ("import sys", "from opentelemetry.instrumentation.auto_instrumentation import run",
               "sys.argv[0] = 'opentelemetry-instrument'", "sys.exit(run())")


def pins() -> list[str]:
    """The distro and the OTLP exporters of the installed SDK's release."""
    return [f"opentelemetry-distro=={version('opentelemetry-instrumentation')}",
            f"opentelemetry-exporter-otlp=={version('opentelemetry-sdk')}"]


def distro_venv() -> Path:
    """The environment's python, built on first use (under a lock: parallel test sessions share it)."""
    base = sysconfig.get_paths()["purelib"]
    key = hashlib.sha256("\n".join([sys.prefix, base, *pins(), *_INSTRUMENT]).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"omtel-distro-venv-{key}"
    python = root / "bin" / "python"
    done = root / ".complete"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
            site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       check=True, capture_output=True, text=True).stdout.strip())
            # addsitedir (not a plain path line) so that the test environment's own .pth files, such as the editable
            # install of omegaml-otel, are processed too
            (site / "omtel_test_env.pth").write_text(f"import site; site.addsitedir({base!r})\n")
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins()],
                           check=True)
            # the command as pip would install it (opentelemetry-instrumentation itself comes through the .pth, so
            # pip installed no script for it here): the docs' examples find it next to this python
            script = root / "bin" / "opentelemetry-instrument"
            script.write_text(f"#!{python}\n" + "".join(f"{line}\n" for line in _INSTRUMENT))
            script.chmod(0o755)
            done.touch()
    return python


def bin_env(python: Path, env: dict) -> dict:
    """``env`` with the environment's scripts first on PATH (``opentelemetry-instrument`` finds ``python`` there)."""
    return {**env, "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
            "VIRTUAL_ENV": str(python.parent.parent)}


def instrument(python: Path) -> list[str]:
    """The ``opentelemetry-instrument`` command of the environment."""
    return [str(python), "-c", "; ".join(_INSTRUMENT)]
