"""A small ClickHouse-over-HTTP sink that owns a chdb folder: ``python tests/support/chsink.py PORT CHDB_PATH``.

It speaks just enough of the ClickHouse HTTP protocol (platform-notes §6) for two clients:

- rotel's ClickHouse exporter: ``POST /?database=otel&query=INSERT INTO t (cols) FORMAT RowBinary`` with a chunked
  body, plain or in ClickHouse's compressed framing (``decompress=1``, lz4). The body goes to a temp file and is
  loaded with ``INSERT INTO t (cols) SELECT * FROM file(tmp, 'RowBinary')``.
- the ordinary ``clickhouse-connect`` HTTP client (and so ``ClickHouseStore('clickhouse://…')``): ``GET /ping``,
  and queries in the POST body or the ``query`` URL argument (in the ``database`` URL arg's database), with bound
  parameters as ``param_<name>`` URL args
  (passed to chdb as real parameters, never substituted), answered in the format asked for (``FORMAT`` clause or
  ``default_format``, else TabSeparated) with the ``X-ClickHouse-Format``/``X-ClickHouse-Timezone`` headers.
  Its inserts (``ClickHouseStore.write``) send the ``INSERT … FORMAT Native`` statement, a newline, then the data,
  all in the body.

The project's DDL (``render_ddl()``) is applied on start. chdb allows one folder per process and is not used from
several threads at once here: every query holds one lock. SIGTERM stops the server and closes chdb (exit code 0).
"""
from __future__ import annotations

import os
import re
import signal
import struct
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from chdb import session

from omegaml_otel._internal.stores.clickhouse_ddl import render_ddl

_INSERT = re.compile(r"\s*INSERT\s+INTO\s+([\w.`]+)\s*(?:\(([^)]*)\))?\s*FORMAT\s+(\w+)\s*$", re.I | re.S)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
_CODE = re.compile(r"Code:\s*(\d+)")
# settings rotel sends that change how RowBinary is read (JSON attribute columns)
_INSERT_SETTINGS = ("input_format_binary_read_json_as_string", "allow_experimental_json_type")
_LOCK = threading.Lock()
_SESSION: session.Session | None = None
_TMP = tempfile.mkdtemp(prefix="chsink-")


def _decompress(body: bytes) -> bytes:
    """ClickHouse's compressed framing: [16B checksum][1B method][u32 csize][u32 dsize][block] repeated."""
    import lz4.block

    out, i = [], 0
    while i < len(body):
        method = body[i + 16]
        csize, dsize = struct.unpack_from("<II", body, i + 17)
        block = body[i + 25:i + 16 + csize]
        if method == 0x82:
            out.append(lz4.block.decompress(block, uncompressed_size=dsize))
        elif method == 0x02:  # none
            out.append(block)
        else:
            raise ValueError(f"unsupported compression method 0x{method:02x}")
        i += 16 + csize
    return b"".join(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- transport ----------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, code: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc: BaseException):
        text = str(exc).strip() or type(exc).__name__
        m = _CODE.search(text)
        code = m[1] if m else "1001"
        if not m:
            text = f"Code: {code}. DB::Exception: {text}"
        sys.stderr.write(f"chsink: {self.command} {urlsplit(self.path).path}: {text.splitlines()[0]}\n")
        self._reply(500, (text + "\n").encode(), {"Content-Type": "text/plain; charset=UTF-8",
                                                  "X-ClickHouse-Exception-Code": code})

    # -- methods ------------------------------------------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        if path in ("/ping", "/"):
            qs = parse_qs(urlsplit(self.path).query)
            if "query" not in qs:
                return self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        self._handle(b"")

    def do_POST(self):
        body = self._body()
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "lz4":
            import lz4.frame
            body = lz4.frame.decompress(body)
        elif encoding == "gzip":
            import gzip
            body = gzip.decompress(body)
        elif encoding not in ("", "identity"):
            return self._error(ValueError(f"unsupported Content-Encoding {encoding}"))
        self._handle(body)

    def _handle(self, body: bytes):
        qs = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        try:
            sql = qs.get("query", [""])[0]
            if not sql and body[:7].upper() == b"INSERT ":  # clickhouse-connect: the statement, a newline, the data
                head, _, body = body.partition(b"\n")
                sql = head.decode()
            m = _INSERT.match(sql)
            if m:
                return self._insert(qs, m, body)
            if qs.get("decompress") == ["1"] and body:
                body = _decompress(body)
            sql = (sql + " " + body.decode()).strip() if body else sql
            self._select(qs, sql)
        except Exception as exc:  # every failure goes back as a ClickHouse error
            self._error(exc)

    def _insert(self, qs: dict, m: re.Match, body: bytes):
        table = m[1] if "." in m[1] else f"{qs.get('database', ['default'])[0]}.{m[1]}"
        if qs.get("decompress") == ["1"]:
            body = _decompress(body)
        fd, tmp = tempfile.mkstemp(dir=_TMP, suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            settings = [f"{k}={qs[k][0]}" for k in _INSERT_SETTINGS if k in qs]
            cols = f" ({m[2]})" if m[2] else ""
            stmt = f"INSERT INTO {table}{cols} SELECT * FROM file('{tmp}', '{m[3]}')"
            if settings:
                stmt += " SETTINGS " + ", ".join(settings)
            with _LOCK:
                _SESSION.query(stmt, "TabSeparated")
        finally:
            os.unlink(tmp)
        self._reply(200, b"", {"X-ClickHouse-Summary": "{}"})

    def _select(self, qs: dict, sql: str):
        sql = sql.strip().rstrip(";")
        m = _FORMAT.search(sql)
        if m:
            fmt, sql = m[1], sql[:m.start()].rstrip()
        else:
            fmt = qs.get("default_format", ["TabSeparated"])[0]
        params = {k[len("param_"):]: v[0] for k, v in qs.items() if k.startswith("param_")}
        database = qs.get("database", ["default"])[0]  # a client's default database (Grafana's is otel)
        if not re.fullmatch(r"\w+", database):
            raise ValueError(f"bad database name {database!r}")
        with _LOCK:
            _SESSION.query(f"USE {database}")
            result = _SESSION.query(sql, fmt, params=params or None)
            data = result.bytes()
            tz = _SESSION.query("SELECT timezone()", "TabSeparatedRaw").bytes().decode().strip()
        self._reply(200, data, {"Content-Type": "application/octet-stream", "X-ClickHouse-Format": fmt,
                                "X-ClickHouse-Timezone": tz, "X-ClickHouse-Summary": "{}"})


def main(argv: list[str]) -> int:
    global _SESSION
    port, path = int(argv[1]), argv[2]
    os.makedirs(path, exist_ok=True)
    _SESSION = session.Session(path)
    for stmt in render_ddl("otel"):
        _SESSION.query(stmt, "TabSeparated")
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"chsink listening on 127.0.0.1:{port}, chdb at {path}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        with _LOCK:
            _SESSION.close()
        import shutil
        shutil.rmtree(_TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
