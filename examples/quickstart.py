"""Quickstart: the seed page's "Logging runtime execution" example as a script.

Starts its own ``omtel worker`` (a real Celery prefork worker) for the duration of the script, runs the ping task
with task logging on, and prints what the task logged and printed, read back from the embedded store::

    python examples/quickstart.py                      # store under ~/.omegaml-otel
    OMTEL_HOME=/tmp/omtel python examples/quickstart.py   # or anywhere else

In everyday use you would run ``omtel worker`` in a terminal (or as a service) instead of ``worker_process()``.
"""
import pandas as pd

import omegaml_otel as om
from omegaml_otel.worker import worker_process

COLUMNS = ["level", "levelno", "logger", "msg", "text", "hostname", "created"]


def main() -> None:
    with worker_process():
        om.logger.reset()                    # start a fresh log window (earlier records stay in the store)

        # enable logging
        om.runtime.mode(logging=True)
        # run a task
        result = om.runtime.ping(fox="bar")
        print(result)
        # access the log
        df = om.logger.dataset.get()
        assert list(df.columns) == COLUMNS, df.columns

        # log from this script, read it back like any other record
        logger = om.logger.getLogger("mylogger")
        logger.info("some message")
        mine = om.logger.dataset.get(logger="mylogger")

    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 50):
        print(df)
        print(mine)
    print()
    for line in pd.concat([df, mine])["text"]:     # what `omtel logs` prints
        print(line)


if __name__ == "__main__":
    main()
