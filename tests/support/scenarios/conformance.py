"""The conformance scenario: the seed's logging and profiling examples, an experiment with metrics and a failing
task, run against a real worker with whatever OMTEL_*/OTEL_* the caller set. It only writes; the caller reads.

    python tests/support/scenarios/conformance.py PATH/TO/testcpu.ipynb
"""
import sys

import omegaml_otel as om
from omegaml_otel.worker import worker_process

notebook = sys.argv[1]
with worker_process(concurrency=2):
    # the seed's logging example
    om.logger.reset()
    om.runtime.mode(logging=True)
    om.runtime.ping(fox="bar")
    om.logger.getLogger("mylogger").info("some message")
    # the seed's profiling example: a notebook job, profiled on the worker
    om.jobs.put(notebook, "testcpu")
    with om.runtime.experiment("perf", provider="profiling"):
        om.runtime.job("testcpu").run().get(timeout=120)
    # an experiment with parameters and metrics, and a task inside it
    with om.runtime.experiment("metrics") as exp:
        exp.log_param("lr", 0.01)
        for step in range(3):
            exp.log_metric("accuracy", 0.5 + step / 10, step=step)
        exp.log_metric("loss", {"train": 0.25, "test": 0.5})
        om.runtime.ping(step="train")
    # a failing task
    with om.runtime.experiment("fails"):
        try:
            om.runtime.ping(exception=True)
        except RuntimeError:
            pass
        else:
            raise AssertionError("ping(exception=True) did not fail")
    om.logger.error("scenario done")
print("conformance scenario ok")
