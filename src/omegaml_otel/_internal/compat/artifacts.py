"""The artifact store: pickled artifacts kept out of telemetry records, signed, and checked before they are loaded.

Unpickling runs code. A telemetry record can be written by any bridged logger of any process, and by anyone who
can reach an OTLP port, so a record must never be what gets unpickled. ``exp.log_artifact()`` therefore writes the
pickled bytes to a folder (``OMTEL_ARTIFACTS``, default ``OMTEL_HOME/artifacts``), named by their SHA-256, and signs
them with a per-installation key (HMAC-SHA256, ``OMTEL_ARTIFACTS_KEY``, created 0600 on first use); the record
carries only the hash, the signature and the format. ``restore_artifacts()`` reads the bytes back and unpickles
them only when the signature over those bytes checks out with this installation's key. Someone who can plant a
record or a file still cannot produce a valid signature without the key.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
import tempfile
from pathlib import Path
from typing import Any

from omegaml_otel._internal.secure import private_dir
from omegaml_otel.errors import ArtifactError, StoreError
from omegaml_otel.settings import settings

__all__ = ["PICKLED", "ArtifactStore", "default_artifacts", "load_pickled", "store_pickled"]

#: formats whose loading runs code: never loaded from a record's inline data
PICKLED = frozenset({"pickle", "joblib", "dill", "cloudpickle"})
#: the format this package writes (the others are refused: nothing here signs them)
FORMAT = "pickle"
_DOMAIN = b"omegaml-otel artifact v1\n"
_KEY_BYTES = 32
_HEX = frozenset("0123456789abcdef")


def _is_hex(text: object, length: int) -> bool:
    return isinstance(text, str) and len(text) == length and set(text) <= _HEX


class ArtifactStore:
    """Content-addressed files under ``folder`` (``ab/abcdef…``), signed with the key in ``key_path``."""

    def __init__(self, folder: str | os.PathLike, key_path: str | os.PathLike):
        self.folder = Path(folder)
        self.key_path = Path(key_path)
        self._key: bytes | None = None

    # -- the key -------------------------------------------------------------------------------------------------
    def key(self) -> bytes:
        """This installation's signing key, created on first use (0600; 0700 for a folder made for it)."""
        if self._key is None:
            try:
                if not self.key_path.exists():
                    self._create_key()
                self._key = self._read_key()
            except OSError as exc:
                raise StoreError(f"cannot read or create the artifact key {self.key_path}: {exc}; set "
                                 "OMTEL_ARTIFACTS_KEY (or OMTEL_HOME) to a place you can write") from exc
        return self._key

    def _create_key(self) -> None:
        private_dir(self.key_path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.key_path.parent, prefix=".key-")  # mkstemp makes it 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(_KEY_BYTES) + "\n")
            try:
                os.link(tmp, self.key_path)  # complete or absent, and never replaces another process's key
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)

    def _read_key(self) -> bytes:
        path = self.key_path
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ArtifactError(f"artifact key {path} can be read or changed by other users (mode {mode & 0o777:o}), "
                                f"who could then sign code for restore_artifacts(); run chmod 600 {path}")
        text = path.read_text().strip()
        if not _is_hex(text, 2 * _KEY_BYTES):
            raise ArtifactError(f"artifact key {path} is not a key this package wrote ({2 * _KEY_BYTES} hex digits); "
                                "restore it from where it was shared (OMTEL_ARTIFACTS_KEY), or delete it to have a new "
                                "one made (artifacts signed with the old key can then no longer be restored)")
        return bytes.fromhex(text)

    def sign(self, fmt: str, data: bytes) -> str:
        return hmac.new(self.key(), _DOMAIN + fmt.encode() + b"\n" + data, hashlib.sha256).hexdigest()

    # -- files ---------------------------------------------------------------------------------------------------
    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / digest

    def put(self, data: bytes, fmt: str = FORMAT) -> dict[str, str]:
        """Store ``data``; returns what the telemetry record carries: format, hash and signature."""
        digest = hashlib.sha256(data).hexdigest()
        signature = self.sign(fmt, data)  # first: a key that cannot be used must not leave a stray file
        target = self.path(digest)
        try:
            if not (target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == digest):
                self._write(target, data)
        except OSError as exc:
            raise StoreError(f"cannot store an artifact in {self.folder}: {exc}; set OMTEL_ARTIFACTS (or "
                             "OMTEL_HOME) to a folder you can write") from exc
        return {"format": fmt, "sha256": digest, "signature": signature}

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        private_dir(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".put-")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)  # readers never see a partial file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, ref: dict, what: str) -> bytes:
        """The stored bytes ``ref`` names, once their hash and signature check out; else ``ArtifactError``."""
        fmt, digest, signature = ref.get("format"), ref.get("sha256"), ref.get("signature")
        if not (_is_hex(digest, 64) and _is_hex(signature, 64)):
            raise ArtifactError(f"{what} has format {fmt!r} but no valid sha256 and signature, so it was not "
                                "loaded (loading it would run whatever code it holds); log the object again with "
                                "exp.log_artifact(), which stores it signed")
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{what}: its file {path} is not in the artifact store {self.folder}; if it was logged "
                                "on another machine, point OMTEL_ARTIFACTS (and OMTEL_ARTIFACTS_KEY) at a folder and "
                                "key shared by both") from None
        if hashlib.sha256(data).hexdigest() != digest or not hmac.compare_digest(self.sign(fmt, data), signature):
            raise ArtifactError(f"{what}: the file {path} fails its signature check (it was changed after it was "
                                f"stored, or signed with another key than {self.key_path}), so it was not loaded; "
                                "log the object again with exp.log_artifact(), or use the key it was signed with "
                                "(OMTEL_ARTIFACTS_KEY)")
        return data


_default: tuple[tuple[Path, Path], ArtifactStore] | None = None


def default_artifacts() -> ArtifactStore:
    """The store that settings name, one per process (the key is read once)."""
    global _default
    cfg = settings()
    where = (cfg.artifact_folder, cfg.artifact_key)
    if _default is None or _default[0] != where:
        _default = (where, ArtifactStore(*where))
    return _default[1]


def store_pickled(obj: Any, store: ArtifactStore | None = None) -> dict[str, str]:
    """Pickle ``obj`` into the artifact store; returns the record's reference (format, sha256, signature)."""
    return (store or default_artifacts()).put(pickle.dumps(obj), FORMAT)


def load_pickled(value: dict, store: ArtifactStore | None = None) -> Any:
    """The object an artifact record refers to, unpickled only after its signature checks out."""
    name = value.get("name")
    what = f"artifact {name!r}" if name is not None else "the artifact"
    fmt = value.get("format")
    if "data" in value:
        raise ArtifactError(
            f"{what} carries {fmt} data inside the telemetry record; such records are refused, since anyone who can "
            "write a telemetry record (a logger of any process, an OTLP port) could have planted it and loading it "
            "runs its code. omegaml-otel stores pickled artifacts signed in OMTEL_ARTIFACTS instead: log the object "
            "again with exp.log_artifact(). Only if you trust where this record came from, decode it yourself: "
            "pickle.loads(base64.b64decode(value['data']))")
    if fmt != FORMAT:
        raise ArtifactError(f"{what} has format {fmt!r}, which omegaml-otel neither writes nor loads; log the object "
                            "again with exp.log_artifact()")
    return pickle.loads((store or default_artifacts()).get(value, what))
