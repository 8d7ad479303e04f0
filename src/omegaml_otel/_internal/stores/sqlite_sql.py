"""SQL text that the SQLite store and its retention both write: one home, so that both wait alike and name
attributes alike (retention's deletes must match exactly what the store's readers select)."""
from __future__ import annotations

#: seconds a statement waits for another process's write lock, unless its caller has less time
BUSY_TIMEOUT = 30.0


def quote(name: str) -> str:
    """An identifier as SQL: a column or table name in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def json_path(key: str) -> str:
    """The JSON path of an attribute key as an SQL string literal. Written into the SQL, not bound: only then can
    SQLite match the expression to an index on it (``sqlite._experiment_index``)."""
    if '"' in key or "\\" in key:
        raise ValueError(f"attribute key {key!r} may not contain quotes or backslashes")
    return "'" + f'$."{key}"'.replace("'", "''") + "'"
