"""LogDataset.ensure() on a store that cannot be read: tried once per back-off, reported once, never raised."""
from __future__ import annotations

import os

from omegaml_otel._internal.compat.logger import LogDataset
from omegaml_otel._internal.stores import open_store


class _CountingStore:
    """A real (corrupt) SQLite store, with its reads counted: the object under test is the dataset, not the store."""

    def __init__(self, store):
        self.store, self.reads = store, 0
        self.url = store.url

    def exists(self, table, **kw):  # the one read ensure() makes
        self.reads += 1
        return self.store.exists(table, **kw)


def test_a_failing_store_is_tried_once_per_back_off(tmp_path, capfd):
    path = tmp_path / "telemetry.sqlite"
    path.write_bytes(os.urandom(8192))  # not a database
    store = _CountingStore(open_store(f"sqlite://{path}"))
    dataset = LogDataset(store=store)
    for _ in range(200):
        dataset.ensure()  # what every om.logger call does first
    assert store.reads == 1
    assert capfd.readouterr().err.count(str(path)) == 1  # reported once, on the real stderr
    dataset._retry_at = 0.0  # the back-off has passed
    dataset.ensure()
    assert store.reads == 2
