"""The ``omtel`` command run in a process of its own, as a user runs it: what a command builds for its store (an
experiment's pipeline, settings read from its environment) never becomes the test process's."""
from __future__ import annotations

import subprocess
import sys
from os import PathLike


def omtel(*args: str, env: dict | None = None, cwd: str | PathLike | None = None) -> subprocess.CompletedProcess:
    """``omtel <args>``; its exit code, stdout and stderr (text) are on the result."""
    return subprocess.run([sys.executable, "-m", "omegaml_otel.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
