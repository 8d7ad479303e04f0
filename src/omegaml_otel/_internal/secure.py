"""Secrets out of sight, files private to their owner: the two rules every layer applies in the same way.

``mask_url`` is the one helper that hides a URL's password, in a bare URL or anywhere in a message or repr: store,
broker and result-backend URLs carry credentials (``clickhouse://u:secret@h/otel``, ``redis://:secret@h/0``), and
an error message or ``repr(settings())`` is pasted into tickets and chats.

``private_dir`` and ``private_file`` create what lives under ``OMTEL_HOME`` readable by its owner only, whatever
the umask: the store holds every record (task arguments included), the broker folder takes task messages (and a
worker runs what a message names, jobs included), and the artifact key signs what may be unpickled. What already
exists keeps its mode: a folder the user shared on purpose stays shared.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["mask_url", "private_dir", "private_file", "MASK", "URL_USERINFO"]

MASK = "***"
#: ``scheme://user:password@`` (groups ``head`` and ``value``, the password): the password runs to the netloc's last
#: '@' (as ``urllib.parse.urlsplit`` reads it), never across a '/', whitespace or a quote, so a URL inside a repr or a
#: sentence is masked in place. The scrubber of records finds URL passwords with this same pattern.
URL_USERINFO = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^\s:/@'\"]*):(?P<value>[^\s/'\"]+)@", re.I)


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (user, host and path kept)."""
    if "://" not in text:
        return text
    return URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` and its missing parents with mode 0700 (``mkdir``'s mode is filtered by the umask, so it is
    set again); folders that exist are left as they are. Raises ``OSError`` as ``mkdir`` does."""
    path = Path(path)
    missing = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it meanwhile, with this same function
        os.chmod(folder, 0o700)
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Create an empty ``path`` with mode 0600 unless it exists (then it is left as it is). SQLite gives a
    database's ``-wal`` and ``-shm`` files the mode of the database file, so creating that one first suffices."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path
