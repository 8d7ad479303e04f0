"""Stores: one module per engine behind the ``Store`` interface."""
from __future__ import annotations

from urllib.parse import urlsplit

from omegaml_otel._internal.secure import mask_url
from omegaml_otel._internal.stores import relay
from omegaml_otel._internal.stores.base import Cond, MapKey, Store, StoreError
from omegaml_otel.settings import settings

__all__ = ["Cond", "MapKey", "Store", "StoreError", "open_store", "prepare_pool_child"]


def open_store(url: str, *, create: bool = True) -> Store:
    """Open the store a URL names; ``sqlite:///abs/path`` is the embedded default. In a prefork worker's pool
    child the worker's store is the one relayed through its main process (stores/relay.py)."""
    return relay.relayed(url) or _open_engine(url, create=create)


def prepare_pool_child() -> None:
    """A prefork worker's main process is about to fork a pool child: that child writes the store that settings
    name through this process (stores/relay.py)."""
    relay.prepare_child(settings().store_url, _open_engine)


def _open_engine(url: str, *, create: bool = True) -> Store:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # each engine is imported when a URL names it: ClickHouse needs an optional extra, and a process that
        # only writes through a collector should not pay for either engine's imports
        from omegaml_otel._internal.stores.sqlite import SqliteStore

        path = url[len("sqlite://"):]
        if not path.startswith("/"):
            raise StoreError(f"store URL {mask_url(url)!r} needs an absolute path: sqlite:////abs/path or "
                             "sqlite:///abs/path")
        return SqliteStore("/" + path.lstrip("/"), create=create, url=url, retention=settings().retention)
    if scheme in ("chdb", "clickhouse", "clickhouses"):
        try:  # see above
            from omegaml_otel._internal.stores.clickhouse import ClickHouseStore
        except ImportError as exc:  # pragma: no cover - numpy/pandas are core dependencies
            raise StoreError(f"store URL scheme {scheme}:// needs pip install 'omegaml-otel[clickhouse]' ({exc})") \
                from exc
        try:
            import clickhouse_connect  # noqa: F401
            if scheme == "chdb":
                import chdb  # noqa: F401
        except ImportError as exc:
            raise StoreError(f"store URL {mask_url(url)!r} needs the ClickHouse client: "
                             f"pip install 'omegaml-otel[clickhouse]' ({exc})") from exc
        return ClickHouseStore(url, create=create)
    raise StoreError(f"store URL {mask_url(url)!r} is not supported; use sqlite:///<absolute path>, "
                     "chdb:///<absolute path> or clickhouse://user:password@host:8123/otel "
                     "(set OMTEL_STORE, or unset it for the embedded default under OMTEL_HOME)")


#: (the URL as settings give it, the store): a store's own ``url`` has its password masked, so it cannot be the key
_default: tuple[str, Store] | None = None


def default_store() -> Store:
    """The store that settings name (``OMTEL_STORE``, else the embedded default), opened once per process."""
    global _default
    url = settings().store_url
    child = relay.relayed(url)
    if child is not None:
        return child
    if _default is None or _default[0] != url:
        _default = (url, open_store(url))
    return _default[1]
