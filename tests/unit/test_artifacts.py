"""compat.artifacts: pickled artifacts are unpickled only from the signed store, never from a record.

Each test has its own artifact folder and key under ``tmp_path``; nothing here reads settings or builds a pipeline.
The planted payloads pickle to ``open(path, 'w')``: had anything unpickled them, ``path`` would exist.
"""
from __future__ import annotations

import base64
import hashlib
import os
import pickle
import stat

import pytest

from omegaml_otel._internal.compat.artifacts import ArtifactStore, load_pickled, store_pickled
from omegaml_otel.errors import ArtifactError, StoreError


class Planted:
    """Unpickling this creates the file at ``path`` (no code of this module is needed to load it)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "home" / "artifacts", tmp_path / "home" / "artifacts.key")


def test_round_trip_and_what_the_record_carries(store):
    obj = {"weights": [0.5, 1.5], "classes": {"a", "b"}}
    ref = store_pickled(obj, store)
    assert set(ref) == {"format", "sha256", "signature"} and ref["format"] == "pickle"
    data = pickle.dumps(obj)
    assert ref["sha256"] == hashlib.sha256(data).hexdigest() and len(ref["signature"]) == 64
    assert store.path(ref["sha256"]).read_bytes() == data
    assert load_pickled({"name": "model", **ref}, store) == obj
    assert store_pickled(obj, store) == ref  # the same content is the same file and signature


def test_files_and_key_are_private(store, tmp_path):
    ref = store_pickled({1, 2}, store)
    path = store.path(ref["sha256"])
    assert _mode(path) == 0o600 and _mode(store.key_path) == 0o600
    for folder in (path.parent, store.folder, tmp_path / "home"):
        assert _mode(folder) == 0o700, folder


def test_the_key_is_made_once_and_shared_by_stores_on_it(store, tmp_path):
    ref = store_pickled([1, 2], store)
    again = ArtifactStore(store.folder, store.key_path)
    assert again.key() == store.key() and load_pickled(ref, again) == [1, 2]
    other = ArtifactStore(store.folder, tmp_path / "other.key")
    with pytest.raises(ArtifactError, match=r"fails its signature check .*OMTEL_ARTIFACTS_KEY"):
        load_pickled({"name": "model", **ref}, other)


def test_a_tampered_file_is_refused(store, tmp_path):
    ref = store_pickled({"genuine": True}, store)
    marker = tmp_path / "planted"
    store.path(ref["sha256"]).write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(ArtifactError, match=r"artifact 'model': the file .* fails its signature check"):
        load_pickled({"name": "model", **ref}, store)
    assert not marker.exists()
    assert store_pickled({"genuine": True}, store) == ref  # logging it again puts the genuine bytes back
    assert load_pickled(ref, store) == {"genuine": True}


def test_a_forged_reference_is_refused(store, tmp_path):
    """Someone who can write records and files, but not read the key, cannot make a valid signature."""
    marker = tmp_path / "planted"
    data = pickle.dumps(Planted(marker))
    digest = hashlib.sha256(data).hexdigest()
    store.path(digest).parent.mkdir(parents=True)
    store.path(digest).write_bytes(data)
    for signature in ("0" * 64, hashlib.sha256(data).hexdigest(), "not hex", None):
        with pytest.raises(ArtifactError):
            load_pickled({"name": "x", "format": "pickle", "sha256": digest, "signature": signature}, store)
    with pytest.raises(ArtifactError, match="no valid sha256 and signature"):
        load_pickled({"name": "x", "format": "pickle"}, store)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["pickle", "joblib", "dill", "cloudpickle"])
def test_inline_data_is_refused_even_with_a_valid_reference(store, tmp_path, fmt):
    marker = tmp_path / "planted"
    ref = store_pickled("genuine", store)
    value = {"name": "m", **ref, "format": fmt, "data": base64.b64encode(pickle.dumps(Planted(marker))).decode()}
    with pytest.raises(ArtifactError, match=rf"carries {fmt} data inside the telemetry record"):
        load_pickled(value, store)
    assert not marker.exists()


def test_only_pickle_is_loaded(store):
    ref = store_pickled("x", store)
    with pytest.raises(ArtifactError, match="'joblib', which omegaml-otel neither writes nor loads"):
        load_pickled({**ref, "format": "joblib"}, store)


def test_a_missing_file_names_the_setting(store):
    ref = store_pickled("x", store)
    store.path(ref["sha256"]).unlink()
    with pytest.raises(ArtifactError, match="is not in the artifact store .*OMTEL_ARTIFACTS"):
        load_pickled(ref, store)


def test_a_key_others_can_read_is_refused(store):
    store.key()
    os.chmod(store.key_path, 0o644)
    with pytest.raises(ArtifactError, match=r"other users \(mode 644\).*chmod 600"):
        ArtifactStore(store.folder, store.key_path).key()


def test_a_key_that_is_not_a_key_is_refused(store):
    store.key_path.parent.mkdir(parents=True)
    store.key_path.write_text("password123\n")
    os.chmod(store.key_path, 0o600)
    with pytest.raises(ArtifactError, match="is not a key this package wrote"):
        store_pickled("x", store)
    assert not store.folder.exists()  # nothing was stored unsigned


def test_an_unwritable_folder_names_the_setting(tmp_path):
    """A plain file where the folder should be: fails for root too."""
    (tmp_path / "blocker").write_text("")
    blocked = ArtifactStore(tmp_path / "blocker" / "artifacts", tmp_path / "key" / "artifacts.key")
    with pytest.raises(StoreError, match="cannot store an artifact in .*set OMTEL_ARTIFACTS"):
        store_pickled("x", blocked)
    no_key = ArtifactStore(tmp_path / "artifacts", tmp_path / "blocker" / "artifacts.key")
    with pytest.raises(StoreError, match="artifact key .*set OMTEL_ARTIFACTS_KEY"):
        store_pickled("x", no_key)
