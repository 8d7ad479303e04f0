"""Sends userapp tasks inside an omegaml-otel experiment (run under opentelemetry-instrument, like the worker)."""
from userapp import add

import omegaml_otel as om

with om.runtime.experiment("userexp") as exp:
    assert add.delay(2, 3).get(timeout=60, interval=0.01) == 5
df = exp.data()
print(",".join(f"{e}:{k}" for e, k in zip(df.event, df.key.fillna(""))))
