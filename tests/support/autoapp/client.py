"""Sends tasks to userapp and prints their ids (run under opentelemetry-instrument, like the worker)."""
from userapp import add

ids = []
for i in range(3):
    r = add.delay(i, 10)
    assert r.get(timeout=60, interval=0.01) == i + 10
    ids.append(r.id)
print(" ".join(ids))
