"""omega-ml's ``OmegaLoggingHandler.setup()`` beyond omega-ml's own test: the exit hook, in a real process."""
from __future__ import annotations

import subprocess
import sys
import uuid

APP = """
import logging
from omegaml_otel._internal.compat.logger import OmegaLoggingHandler
logger = logging.getLogger({name!r})
OmegaLoggingHandler.setup(logger=logger, level='INFO', exit_hook=True)
logger.debug('not at INFO')
logger.info('started')
raise ValueError('boom')
"""


def test_exit_hook_logs_uncaught_exceptions_and_keeps_the_report(om):
    name = f"app-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([sys.executable, "-c", APP.format(name=name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ValueError: boom" in proc.stderr  # the previous hook still reports it
    df = om.logger.dataset.get(logger=name)
    assert list(df.level) == ["INFO", "ERROR"]
    assert df.msg.tolist() == ["started", "uncaught ValueError: boom"]
