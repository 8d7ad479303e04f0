"""The seed logging example end to end in a fresh process, with whatever OMTEL_* the caller set (e.g. Redis)."""
import omegaml_otel as om
from omegaml_otel.worker import worker_process

with worker_process(concurrency=2):
    om.logger.reset()
    om.runtime.mode(logging=True)
    assert om.runtime.ping(fox="bar")["kwargs"] == {"fox": "bar"}
    df = om.logger.dataset.get()
    assert list(df.columns) == ["level", "levelno", "logger", "msg", "text", "hostname", "created"], df.columns
    assert list(zip(df.logger, df.levelno)) == [("system", 999), ("simple", 4), ("celery", 20), ("omegaml", 20),
                                                ("root", 20)], df
    om.logger.getLogger("mylogger").info("some message")
    assert list(om.logger.dataset.get(logger="mylogger").msg) == ["some message"]
print("seed logging ok")
