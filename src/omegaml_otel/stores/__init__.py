"""Stores: one module per engine behind the ``Store`` interface."""
from __future__ import annotations

from urllib.parse import urlsplit

from omegaml_otel.stores.base import Cond, MapKey, Store, StoreError

__all__ = ["Cond", "MapKey", "Store", "StoreError", "open_store"]


def open_store(url: str, *, create: bool = True) -> Store:
    """Open the store a URL names; ``sqlite:///abs/path`` is the embedded default."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from omegaml_otel.stores.sqlite import SqliteStore

        path = url[len("sqlite://"):]
        if not path.startswith("/"):
            raise StoreError(f"store URL {url!r} needs an absolute path: sqlite:////abs/path or sqlite:///abs/path")
        return SqliteStore("/" + path.lstrip("/"), create=create, url=url)
    raise StoreError(f"store URL {url!r} is not supported; use sqlite:///<absolute path> "
                     "(set OMTEL_STORE, or unset it for the embedded default under OMTEL_HOME)")


_default: Store | None = None


def default_store() -> Store:
    """The store that settings name (``OMTEL_STORE``, else the embedded default), opened once per process."""
    global _default
    from omegaml_otel.settings import settings

    url = settings().store_url
    if _default is None or _default.url != url:
        _default = open_store(url)
    return _default
