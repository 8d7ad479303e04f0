"""Jobs: ``om.jobs`` stores Python scripts and notebooks; ``om.runtime.job(name).run()`` runs one on a worker.

The client reads the job's source and sends it inside the task message (``omegaml.notebook.tasks.run_omegaml_job``,
args ``name, kind, source``), so a worker needs no storage shared with the client. On the worker:

- a ``.py`` script runs in the worker process in a fresh ``__main__`` namespace, so its ``print`` output and its
  ``logging`` records are captured like those of any task;
- a ``.ipynb`` notebook runs in a real Jupyter kernel (nbclient); every line the kernel streams to stdout or stderr
  (``print``, and Python ``logging``, which writes to stderr there) becomes an OTel log record of the task, tagged
  ``log.iostream`` and ``notebook.cell``. omega-ml loses this output: it runs notebook jobs in a separate kernel
  whose ``print`` output never reaches its log.

Unlike omega-ml, a job that raises fails its task: ``.get()`` raises :class:`JobError` naming the cell and the error.
"""
from __future__ import annotations

import contextvars
import io
import json
import linecache
import os
import re
import sys
import tempfile
import traceback
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from omegaml_otel._internal.capture import streams
from omegaml_otel._internal.capture.context import record_attributes
from omegaml_otel._internal.export.pipeline import pipeline
from omegaml_otel._internal.runtimes.tasks import OmegaTask
from omegaml_otel._internal.secure import private_dir
from omegaml_otel.conventions import JOB_NAME, NOTEBOOK_CELL
from omegaml_otel.errors import JobError
from omegaml_otel.settings import settings

TASK_NAME = "omegaml.notebook.tasks.run_omegaml_job"
KINDS = ("py", "ipynb")
#: what the task returns of the job's output: at most this many entries of at most this many characters each
MAX_OUTPUTS = 100
MAX_OUTPUT_CHARS = 2000
_NAME = re.compile(r"[\w\-]+(?:[./][\w\-]+)*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- the store (client side) -------------------------------------------------------------------------------------
class JobStore:
    """``om.jobs``: scripts and notebooks kept as ``<name>.py`` / ``<name>.ipynb`` under ``OMTEL_HOME/jobs``."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self._folder = Path(folder) if folder is not None else None

    @property
    def folder(self) -> Path:
        return self._folder if self._folder is not None else settings().home / "jobs"

    def put(self, path_or_source: Any, name: str) -> str:
        """Store a job: a ``.py`` or ``.ipynb`` file path, Python source text, a notebook's JSON text, or a
        notebook object (nbformat ``NotebookNode`` or dict). A job of the same name is replaced. Returns the name."""
        name = _normalize(name)
        kind, source = _load(path_or_source)
        folder = self.folder
        target = folder / f"{name}.{kind}"
        private_dir(target.parent)  # a worker runs what is stored here: owner only
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".put-", suffix=f".{kind}")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, target)
        for other in KINDS:  # one job per name, whatever its kind
            if other != kind:
                (folder / f"{name}.{other}").unlink(missing_ok=True)
        return name

    def list(self) -> list[str]:
        """Names of the stored jobs, sorted."""
        folder = self.folder
        if not folder.exists():
            return []
        names = {p.relative_to(folder).as_posix().rsplit(".", 1)[0]
                 for kind in KINDS for p in folder.rglob(f"*.{kind}") if not p.name.startswith(".")}
        return sorted(names)

    def kind(self, name: str) -> str:
        return self._path(name).suffix[1:]

    def get(self, name: str) -> str:
        """The job's source text (a notebook's JSON text for notebooks)."""
        return self._path(name).read_text(encoding="utf-8")

    def read(self, name: str) -> tuple[str, str, str]:
        """(normalized name, kind, source) — what the task message carries."""
        path = self._path(name)
        return _normalize(name), path.suffix[1:], path.read_text(encoding="utf-8")

    def exists(self, name: str) -> bool:
        try:
            self._path(name)
        except KeyError:
            return False
        return True

    def drop(self, name: str, force: bool = False) -> bool:
        """Remove a job; an unknown name raises KeyError unless ``force=True`` (then returns False)."""
        try:
            path = self._path(name)
        except KeyError:
            if force:
                return False
            raise
        path.unlink()
        return True

    def _path(self, name: str) -> Path:
        name = _normalize(name)
        for kind in KINDS:
            path = self.folder / f"{name}.{kind}"
            if path.exists():
                return path
        known = self.list()
        raise KeyError(f"no job named {name!r}; om.jobs.list() shows the stored jobs "
                       f"({', '.join(map(repr, known)) or 'none yet'}); store one with om.jobs.put(path, name)")


def _normalize(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a job name is a string, not {type(name).__name__}")
    for kind in KINDS:
        if name.endswith(f".{kind}"):
            name = name[:-len(kind) - 1]
    if not _NAME.fullmatch(name) or ".." in name:  # fullmatch: '$' would let a trailing newline through
        raise ValueError(f"job name {name!r}: use letters, digits, '_', '-', '.' and '/' between parts, "
                         "e.g. 'testcpu' or 'reports/daily'")
    return name


def _load(obj: Any) -> tuple[str, str]:
    """(kind, source text) of what ``put`` was given."""
    if isinstance(obj, dict):  # a notebook object (NotebookNode is a dict)
        return "ipynb", _notebook_text(obj, "the notebook object")
    if isinstance(obj, os.PathLike) or (isinstance(obj, str) and _looks_like_path(obj)):
        path = Path(os.fspath(obj).strip() if isinstance(obj, str) else obj).expanduser()
        if not path.is_file():
            raise ValueError(f"no such file {str(path)!r}; give the path of a .py script or .ipynb notebook, or "
                             "Python source text")
        kind = path.suffix[1:]
        if kind not in KINDS:
            raise ValueError(f"{str(path)!r}: unknown kind of job {path.suffix or '(no extension)'!r}; jobs are .py "
                             "scripts or .ipynb notebooks")
        text = path.read_text(encoding="utf-8")
        if kind == "ipynb":
            return kind, _notebook_text(_parse_notebook(text, str(path)), str(path))
        _check_python(text, str(path))
        return kind, text
    if isinstance(obj, str):
        if obj.lstrip().startswith("{"):
            return "ipynb", _notebook_text(_parse_notebook(obj, "the notebook text"), "the notebook text")
        _check_python(obj, "the source text")
        return "py", obj
    raise ValueError(f"cannot store a {type(obj).__name__} as a job; give a .py/.ipynb file path, Python source "
                     "text or a notebook object")


def _looks_like_path(text: str) -> bool:
    text = text.strip()
    if not text or "\n" in text:
        return False
    if text.endswith(tuple(f".{k}" for k in KINDS)):
        return True
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):  # e.g. a source line too long for a file name
        return False


def _parse_notebook(text: str, what: str) -> dict:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not a notebook (invalid JSON: {exc})") from None
    return nb


def _notebook_text(nb: dict, what: str) -> str:
    if not isinstance(nb.get("cells"), list) or "nbformat" not in nb:
        raise ValueError(f"{what} is not a Jupyter notebook (it has no 'cells' list or no 'nbformat')")
    return json.dumps(nb, indent=1, ensure_ascii=False)


def _check_python(text: str, what: str) -> None:
    try:
        compile(text, what, "exec")
    except SyntaxError as exc:
        raise ValueError(f"{what} is not valid Python: {exc}") from None


# -- the runtime side (client) -----------------------------------------------------------------------------------
class JobProxy:
    """``om.runtime.job(name)``: ``run()`` sends the job's current source to a worker."""

    def __init__(self, runtime, name: str, store: JobStore | None = None):
        self.runtime = runtime
        self.store = store or default_jobs()
        self.name = _normalize(name)
        self.store._path(self.name)  # unknown job: KeyError now, not on the worker

    def run(self, timeout: float | None = None, **kwargs) -> AsyncResult:
        """Run the job on a worker; returns the AsyncResult (``.get()`` is the job's result dict, or raises
        JobError). ``timeout``: seconds per notebook cell, or for the whole of a script. ``kwargs`` become
        variables of the job (globals of a script; a first, injected cell of a notebook)."""
        name, kind, source = self.store.read(self.name)
        options = {"soft_time_limit": timeout} if timeout and kind == "py" else {}
        return self.runtime.task(TASK_NAME).apply_async(
            args=(name, kind, source), kwargs={"timeout": timeout, **kwargs}, **options)

    def __repr__(self) -> str:
        return f"JobProxy({self.name!r})"


@lru_cache(maxsize=1)
def default_jobs() -> JobStore:
    """``om.jobs``: the job store under ``OMTEL_HOME/jobs``."""
    return JobStore()


# -- the worker side -----------------------------------------------------------------------------------------------
def register(app: Celery) -> None:
    @app.task(name=TASK_NAME, base=OmegaTask, bind=True)
    def run_omegaml_job(task, name: str, kind: str, source: str, timeout: float | None = None, **kwargs):
        """Run a job sent by ``om.runtime.job(name).run()``; see the module doc."""
        return run_job(name, kind, source, timeout=timeout, variables=kwargs)


def run_job(name: str, kind: str, source: str, timeout: float | None = None, variables: dict | None = None) -> dict:
    if kind not in KINDS:
        raise ValueError(f"job {name!r}: unknown kind {kind!r}; jobs are {' or '.join(KINDS)}")
    token = record_attributes.set({**record_attributes.get(), JOB_NAME: name})
    try:
        # print capture is on in a worker; in-process runs (mode(local=True)) get it for the job's duration
        with streams.installed(pipeline().logger_provider):
            if kind == "py":
                return _run_script(name, source, variables or {})
            return _run_notebook(name, source, timeout, variables or {})
    finally:
        record_attributes.reset(token)


class _Recorder(io.TextIOBase):
    """Writes through to a stream and keeps the first MAX_OUTPUT_CHARS characters for the task's result."""

    def __init__(self, target, kept: io.StringIO):
        self.target = target
        self.kept = kept  # shared by stdout and stderr

    def write(self, s) -> int:
        room = MAX_OUTPUT_CHARS + 1 - self.kept.tell()
        if room > 0:
            self.kept.write(str(s)[:room])
        return self.target.write(s)

    def flush(self) -> None:
        self.target.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self):
        return getattr(self.target, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self.target, "errors", "strict")

    def __getattr__(self, item):  # buffer, … of the real stream
        return getattr(self.target, item)


@contextmanager
def _recording(kept: io.StringIO):
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Recorder(saved[0], kept), _Recorder(saved[1], kept)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _run_script(name: str, source: str, variables: dict) -> dict:
    filename = f"<job {name}.py>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)  # tracebacks show the script's lines
    namespace = {"__name__": "__main__", "__file__": filename, "__builtins__": __builtins__, **variables}
    kept = io.StringIO()
    try:
        code = compile(source, filename, "exec")
        with _recording(kept):
            exec(code, namespace)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise JobError(f"job {name!r} exited with status {exc.code}") from None
    except Exception as exc:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__
                                                else None))
        raise JobError(f"job {name!r} failed: {type(exc).__name__}: {exc}\n{_truncate(tb, 4000)}") from None
    finally:
        linecache.cache.pop(filename, None)
        _flush_streams()
    text = kept.getvalue()
    return {"job": name, "kind": "py", "status": "OK", "outputs": [_truncate(text)] if text else []}


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    streams.flush_partial()


def _notebook_modules():
    try:  # the optional 'notebook' extra: only a worker that runs a notebook needs it
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as exc:
        raise JobError(f"running notebooks needs nbclient, nbformat and ipykernel on the worker ({exc}); install "
                       "them with `pip install 'omegaml-otel[notebook]'`") from None
    return nbformat, NotebookClient, CellExecutionError


def _run_notebook(name: str, source: str, timeout: float | None, variables: dict) -> dict:
    nbformat, NotebookClient, CellExecutionError = _notebook_modules()
    with warnings.catch_warnings():  # e.g. MissingIDFieldWarning for older notebooks: not the job's output
        warnings.simplefilter("ignore")
        nb = nbformat.reads(source, as_version=4)
    offset = 0
    if variables:  # papermill-style: an injected first cell; cells keep their own numbers (the injected one is -1)
        assignments = "\n".join(f"{k} = {v!r}" for k, v in variables.items() if k.isidentifier())
        nb.cells.insert(0, nbformat.v4.new_code_cell(assignments, metadata={"tags": ["injected-parameters"]}))
        offset = 1
    # 'python3': the spec ipykernel installs into the environment's share/jupyter, or else ipykernel's own, which
    # jupyter_client falls back to for that name; either runs the kernel with this interpreter
    client = _streaming_client_class()(nb, kernel_name="python3", timeout=timeout, allow_errors=False)
    client.cell_offset = offset
    ran = 0
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                raise JobError(f"job {name!r} failed in notebook cell {index - offset}:\n"
                               f"{_truncate(_ANSI.sub('', str(exc)), 4000)}") from None
            except Exception as exc:  # a timeout, a dead kernel
                raise JobError(f"job {name!r} failed in notebook cell {index - offset}: "
                               f"{type(exc).__name__}: {_ANSI.sub('', str(exc))}") from None
            finally:
                client.flush_lines(index)
            ran += index >= offset
    outputs = []
    for cell in nb.cells[offset:]:
        text = "".join(_output_text(out) for out in cell.get("outputs", []))
        if text and len(outputs) < MAX_OUTPUTS:
            outputs.append(_truncate(text))
    return {"job": name, "kind": "ipynb", "status": "OK", "cells": ran, "outputs": outputs}


def _output_text(out) -> str:
    if out.get("output_type") == "stream":
        return out.get("text", "")
    data = out.get("data", {})
    text = data.get("text/plain", "")
    return (text if isinstance(text, str) else "".join(text)) + ("\n" if text else "")


def _truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


@lru_cache(maxsize=1)
def _streaming_client_class():
    _, NotebookClient, _ = _notebook_modules()

    class StreamingClient(NotebookClient):
        """Hands what the kernel streams to the process's stream bridge while the cell runs, so that each line
        becomes a log record of the task (or goes to the logging mode's logger) with its cell number."""

        cell_offset = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # the task's context (task id, logging mode): nbclient may handle messages on a thread of its own
            self._context = contextvars.copy_context()

        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] == "stream":
                content = msg["content"]
                self._context.run(_emit_text, content.get("name", "stdout"), content.get("text", ""),
                                  cell_index - self.cell_offset)
            return super().output(outs, msg, display_id, cell_index)

        def flush_lines(self, cell_index: int) -> None:
            self._context.run(_emit_text, "stdout", "", cell_index - self.cell_offset, True)

    return StreamingClient


def _emit_text(stream: str, text: str, cell: int, end_of_cell: bool = False) -> None:
    """Write what the kernel streamed to this process's sys.stdout/sys.stderr — the StreamBridge installed for the
    task, which keeps unterminated lines and progress updates (``\\r``) in linear time — with the cell number added
    to the record attributes; the bridge makes the records (or follows the logging mode). At a cell's end its
    unterminated lines become records of that cell."""
    token = record_attributes.set({**record_attributes.get(), NOTEBOOK_CELL: cell})
    try:
        if text:
            (sys.stderr if stream == "stderr" else sys.stdout).write(text)
        if end_of_cell:
            streams.flush_partial()
    finally:
        record_attributes.reset(token)
