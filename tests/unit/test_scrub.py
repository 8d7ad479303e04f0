"""Scrubber: secrets in keys, text, JSON and URLs; LogEmitter (both paths) and the span processor apply it."""
from __future__ import annotations

import json

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omegaml_otel._internal.export import scrub
from omegaml_otel._internal.export.emitter import LogEmitter
from omegaml_otel._internal.export.scrub import Scrubber, ScrubbingSpanProcessor, marker
from omegaml_otel.conventions import KEY, TASK_ID, VALUE

from .helpers import CollectingBuffer, finished, memory_logs, resource

S = Scrubber()


@pytest.mark.parametrize("key, reason", [
    ("password", "password"), ("DB_PASSWORD", "password"), ("passwd", "passwd"), ("mysql_pwd", "pwd"),
    ("client_secret", "secret"), ("token", "token"), ("access_token", "token"), ("refresh-token", "token"),
    ("api_key", "api_key"), ("apikey", "apikey"), ("X-API-Key", "api-key"), ("Authorization", "auth"),
    ("oauth", "auth"), ("credentials", "credential"), ("private_key", "private_key"), ("aws_access_key_id",
                                                                                     "access_key"),
    ("cookie", "cookie"), ("sessionid", "session"), ("jwt", "jwt"), ("csrf_token", "csrf"),
])
def test_secret_keys(key, reason):
    assert S.secret_key(key) == reason


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "token_count", "num_tokens", "token_ids", "author",
                                 "authors", "fox", "keyboard", "user", "message", "celery.task_id", "pwd_dir"])
def test_keys_that_are_not_secrets(key):
    assert S.secret_key(key) is None


@pytest.mark.parametrize("before, after", [
    # Celery's repr of a task's kwargs (the 'data' attribute, the body of "Task ... succeeded: {...}")
    ("{'password': 'hunter2', 'api_key': 'sk-1', 'fox': 'bar'}",
     "{'password': '[Scrubbed due to password]', 'api_key': '[Scrubbed due to api_key]', 'fox': 'bar'}"),
    # the same repr nested in the repr of Celery's context dict
    ("{'kwargs': \"{'password': 'hunter2'}\", 'eta': None}",
     "{'kwargs': \"{'password': '[Scrubbed due to password]'}\", 'eta': None}"),
    ('{"token": "abc", "n": 1}', '{"token": "[Scrubbed due to token]", "n": 1}'),
    ('{"password": "hun\\"ter2"}', '{"password": "[Scrubbed due to password]"}'),  # an escaped quote in the value
    ('"{\\"secret\\": \\"s3\\"}"', '"{\\"secret\\": \\"[Scrubbed due to secret]\\"}"'),  # JSON inside JSON
    ("connect(password=hunter2, user=bob)", "connect(password=[Scrubbed due to password], user=bob)"),
    ("GET /x?api_key=abc&page=2", "GET /x?api_key=[Scrubbed due to api_key]&page=2"),
    ("Authorization: Bearer abc.def", "Authorization: [Scrubbed due to auth]"),
    ("postgresql://admin:hunter2@db:5432/x", "postgresql://admin:[Scrubbed due to URL password]@db:5432/x"),
    ("redis://:p@ss@host/0", "redis://:[Scrubbed due to URL password]@host/0"),  # an unencoded @ in the password
    ("svn+ssh://u:pw@h", "svn+ssh://u:[Scrubbed due to URL password]@h"),
])
def test_text_replaces_only_the_secret(before, after):
    assert S.text(before) == after


@pytest.mark.parametrize("text", [
    "user alice processed item 12345", "wrong password for user bob", "http://host:8080/a@b", "tokenizer=bert",
    "max_tokens: 512", "if password == x", "author: Jane", "[Scrubbed due to password]", "",
])
def test_text_without_secrets_is_returned_as_is(text):
    assert S.text(text) is text


def test_scrubbing_is_idempotent():
    once = S.text("{'password': 'x', 'url': 'https://u:p@h'}")
    assert S.text(once) == once


def test_every_stem_is_checked_by_the_fast_test():
    for stem in scrub._STEMS:
        assert scrub._has_stem(f"xx{stem}yy"), stem
    assert not scrub._has_stem("user alice processed item 12345")


def test_value_scrubs_by_key_at_any_depth_and_copies():
    data = {"kwargs": {"Password": "x", "nested": [{"secret_id": 1}, "postgres://u:pw@h"], "auth": {"u": 1}},
            "args": ("a", 2)}
    out = S.value(data)
    assert out == {"kwargs": {"Password": marker("password"),
                              "nested": [{"secret_id": marker("secret")}, f"postgres://u:{marker('URL password')}@h"],
                              "auth": marker("auth")}, "args": ("a", 2)}
    assert data["kwargs"]["Password"] == "x"  # the input is not modified


def test_json_text_stays_valid_json():
    doc = json.dumps({"result": {"kwargs": {"password": 12345, "auth": {"user": "u"}, "fox": "bar"}}})
    out = json.loads(S.json_text(doc))
    assert out == {"result": {"kwargs": {"password": marker("password"), "auth": marker("auth"), "fox": "bar"}}}
    assert S.json_text('{"fox": "bar"}') == '{"fox": "bar"}'
    assert S.json_text("not json, token=x") == f"not json, token={marker('token')}"


def test_attributes_copy_on_write():
    attrs = {"password": 3, "data": "{'api_key': 'k'}", "note": "fine", TASK_ID: "token=abc", "seq": ["ok", "a://u:p@h"]}
    out = S.attributes(attrs)
    assert out == {"password": marker("password"), "data": f"{{'api_key': '{marker('api_key')}'}}", "note": "fine",
                   TASK_ID: "token=abc",  # the package's own attributes are not searched
                   "seq": ("ok", f"a://u:{marker('URL password')}@h")}
    assert attrs["password"] == 3  # not modified
    clean = {"a": "x", TASK_ID: "t"}
    assert S.attributes(clean) is clean


def test_an_experiment_value_of_a_secret_key():
    """exp.log_param('api_key', 'sk-1'): the key and the value are two attributes of the event."""
    out = S.attributes({KEY: "api_key", VALUE: '"sk-1"'})
    assert json.loads(out[VALUE]) == marker("api_key")
    assert S.attributes({KEY: "lr", VALUE: "0.1"})[VALUE] == "0.1"


def test_extra_patterns():
    s = Scrubber(["iban", r"ssn\b"])
    assert s.secret_key("customer_IBAN") == "iban" and s.secret_key("ssn") == "ssn"
    assert s.text("pay iban=DE89370400440532013000 now") == f"pay iban={marker('iban')} now"
    assert s.secret_key("password") == "password"  # the defaults still apply
    assert S.secret_key("iban") is None


def _emit(emitter, body, attributes):
    emitter.emit("unit.scope", timestamp=1, severity_number=SeverityNumber.INFO, severity_text="INFO", body=body,
                 attributes=attributes)


def test_emitter_scrubs_on_the_sdk_path():
    provider, exporter = memory_logs()
    emitter = LogEmitter(provider)
    _emit(emitter, "login with password=hunter2", {"api_key": "k", "fox": "bar"})
    [rec] = finished(exporter)
    assert rec.body == f"login with password={marker('password')}"
    assert dict(rec.attributes) == {"api_key": marker("api_key"), "fox": "bar"}


def test_emitter_scrubs_on_the_fast_path():
    provider, _ = memory_logs()
    buffer = CollectingBuffer()
    try:
        _emit(LogEmitter(provider, buffer), "to postgresql://u:hunter2@db", {"token": "t"})
        buffer.flush()
    finally:
        buffer.shutdown()
    [rec] = buffer.items
    assert rec.body == f"to postgresql://u:{marker('URL password')}@db"
    assert rec.attributes == {"token": marker("token")}


def test_emitter_uses_the_scrubber_it_is_given():
    provider, exporter = memory_logs()
    _emit(LogEmitter(provider, scrubber=Scrubber(["iban"])), "iban=DE1", {})
    assert finished(exporter)[0].body == f"iban={marker('iban')}"


def test_span_processor_scrubs_attributes_and_events():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource(), shutdown_on_exit=False)
    provider.add_span_processor(ScrubbingSpanProcessor(SimpleSpanProcessor(exporter), S))
    tracer = provider.get_tracer("unit")
    with tracer.start_as_current_span("db", attributes={"db.password": "hunter2", "db.name": "x"}) as span:
        span.add_event("connect", {"url": "postgresql://u:hunter2@h"})
        span.add_event("plain", {"n": 1})
    with tracer.start_as_current_span("clean", attributes={"a": "b"}):
        pass
    scrubbed, clean = exporter.get_finished_spans()
    assert dict(scrubbed.attributes) == {"db.password": marker("password"), "db.name": "x"}
    assert [dict(e.attributes) for e in scrubbed.events] == [{"url": f"postgresql://u:{marker('URL password')}@h"},
                                                             {"n": 1}]
    assert (scrubbed.name, scrubbed.context, scrubbed.start_time) == ("db", span.get_span_context(), span.start_time)
    assert dict(clean.attributes) == {"a": "b"}
