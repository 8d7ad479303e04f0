"""Scrubbing: secrets are replaced by a marker before a record leaves the process.

Task kwargs such as ``password=`` reach the telemetry in many shapes: a dict (``task_call``), the repr Celery puts
in its own log records (``data``, and the body of "Task ... succeeded: {...}"), JSON (experiment values), a URL
with credentials in a message. So there are three rules, applied on the one path each signal takes
(``LogEmitter.emit`` for every log record, ``ScrubbingSpanProcessor`` for the spans of the package's pipeline):

- an attribute or dict key that matches a pattern has its whole value replaced (``[Scrubbed due to password]``);
- in text (bodies, attribute values), the value written after such a key (``password=x``, ``'api_key': 'x'``,
  ``"token": "x"``, ``Authorization: Bearer x``) is replaced, the rest of the text kept: a message that merely
  mentions a password is not a secret, and the rest of a ping's echo is what the user wants to read;
- the password of a URL (``scheme://user:password@host``) is replaced.

Cost matters on the log-call path, so text is first tested for a few literal stems of the default patterns
(substring tests on the lowercased text: about half a microsecond for a typical message, where one case-insensitive
regular expression of the patterns takes 15); only texts with a hit go through the regular expressions, and only
around the hit. Key verdicts are cached: each new key is matched once.
The marker contains no quotes, so a scrubbed repr or JSON string stays well-formed.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from omegaml_otel._internal.secure import URL_USERINFO
from omegaml_otel.conventions import (
    DATASET,
    EVENT,
    EXPERIMENT,
    IOSTREAM,
    JOB_NAME,
    KEY,
    LEVELNO,
    LOG_RESET,
    NOTEBOOK_CELL,
    PROFILE_INTERVAL,
    PROVIDER,
    RUN,
    STEP,
    TASK_END,
    TASK_ID,
    TASK_NAME,
    VALUE,
)
from omegaml_otel.settings import settings

__all__ = ["DEFAULT_PATTERNS", "Scrubber", "ScrubbingSpanProcessor", "default_scrubber", "marker", "scrubbing"]

#: matched case-insensitively anywhere in a key (docs/configuration.md lists them); like Logfire's defaults, plus
#: tokens, with the exceptions an ML user's kwargs need (max_tokens, tokenizer, token_count are not secrets)
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"passw(?:or)?d",
    r"(?:\b|_)pwd\b",
    r"secret",
    r"token(?!s|i[sz]|[._ -]?(?:counts?|ids?|len(?:gth)?|usage|type)\b)",
    r"api[._ -]?key",
    r"auth(?!ors?\b)",
    r"credential",
    r"private[._ -]?key",
    r"access[._ -]?key",
    r"cookie",
    r"session",
    r"(?:\b|_)jwt(?:\b|_)",
    r"(?:\b|_)[cx]srf(?:\b|_)",
)
#: lowercase literals, one of which occurs in every match of a default pattern, and the URL separator
_STEMS = ("passw", "pwd", "secret", "token", "key", "auth", "credential", "cookie", "session", "jwt", "srf", "://")
#: the package's own attributes: set by this package, never a secret, so their values are not searched
_OWN = frozenset({TASK_ID, TASK_NAME, IOSTREAM, JOB_NAME, NOTEBOOK_CELL, DATASET, LEVELNO, LOG_RESET, TASK_END,
                  EXPERIMENT, RUN, EVENT, STEP, PROVIDER, PROFILE_INTERVAL, KEY})
#: characters of a key (``db.api-key_2``) and of a URL scheme (``svn+ssh``)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_SCHEME_CHARS = _KEY_CHARS | {"+"}
#: after a key's start: the key, its closing quote (also a JSON-escaped one), the separator, and the value: a
#: quoted string, an escaped-JSON string, or a bare word; an auth scheme word (Bearer x) belongs to the value
_PAIR = re.compile(r"""
    (?P<key>[\w.\-]+)(?:\\?['"])?\s*[:=]\s*(?![=:])
    (?P<value>(?:(?:bearer|basic|digest|token)\s+)?
      (?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\"|[^\s,;&'"}\])]+))""", re.I | re.X)
_MARKER = "[Scrubbed due to {}]"
#: key verdicts: the package's own key (value kept as is), a JSON value (scrubbed as data), a key whose text is
#: searched; any other verdict is the reason (the matched text) for scrubbing the whole value
_SKIP, _JSON, _SEARCH = object(), object(), object()
_MAX_KEYS = 10_000
_MAX_DEPTH = 32


def _has_stem(low: str) -> bool:
    """Whether any of ``_STEMS`` is in ``low``: spelled out, this is about twice as fast as a loop or a
    regular expression, and it runs for every message (tests/unit/test_scrub.py checks it against _STEMS)."""
    return ("passw" in low or "pwd" in low or "secret" in low or "token" in low or "key" in low or "auth" in low
            or "credential" in low or "cookie" in low or "session" in low or "jwt" in low or "srf" in low
            or "://" in low)


def _initial_verdicts() -> dict[Any, Any]:
    return {VALUE: _JSON, **{k: _SKIP for k in _OWN}}


def marker(reason: str) -> str:
    """What a secret is replaced by; says which pattern matched, so an over-eager pattern is easy to spot."""
    return _MARKER.format(reason)


class Scrubber:
    """Applies the default patterns and ``extra_patterns`` (regular expressions, matched case-insensitively)."""

    def __init__(self, extra_patterns: Iterable[str] = ()):
        self.extra_patterns = tuple(extra_patterns)
        self._key = re.compile("|".join(f"(?:{p})" for p in DEFAULT_PATTERNS + self.extra_patterns), re.I)
        # extra patterns have no known literal stems: they are searched for as they are, only when given
        self._extra = re.compile("|".join(f"(?:{p})" for p in self.extra_patterns), re.I) \
            if self.extra_patterns else None
        self._verdicts: dict[Any, Any] = _initial_verdicts()

    # -- keys -------------------------------------------------------------------------------------------------------
    def _verdict(self, key) -> Any:
        verdict = self._verdicts.get(key)
        if verdict is None:
            m = self._key.search(str(key))
            verdict = m.group(0).lower().strip("_.- ") if m else _SEARCH
            if len(self._verdicts) > _MAX_KEYS:  # keys made up per record must not grow the cache without end
                self._verdicts = _initial_verdicts()
            self._verdicts[key] = verdict
        return verdict

    def secret_key(self, key) -> str | None:
        """The reason a key's value is a secret, or None."""
        verdict = self._verdict(key)
        return verdict if isinstance(verdict, str) else None

    # -- text -------------------------------------------------------------------------------------------------------
    def text(self, s: str) -> str:
        """``s`` with the values after secret keys and the passwords of URLs replaced; ``s`` itself when none."""
        low = s.lower()
        hits = None
        if not _has_stem(low) and self._extra is None:
            return s
        for stem in _STEMS:
            i = low.find(stem)
            while i >= 0:
                if hits is None:
                    hits = []
                hits.append((i, stem))
                i = low.find(stem, i + len(stem))
        if self._extra is not None:
            for m in self._extra.finditer(s):
                if hits is None:
                    hits = []
                hits.append((m.start(), ""))
        if hits is None:
            return s
        return self._replace(s, low, sorted(hits))

    def _replace(self, s: str, low: str, hits: list[tuple[int, str]]) -> str:
        spans: list[tuple[int, int, str]] = []
        done = -1  # the end of the last replaced value: hits before it are inside it
        seen = -1  # the start of the last key tried: a key with several stems is tried once
        last = -1  # the last hit: walking back stops there, so a long key with many hits is walked once
        for i, stem in hits:
            if i < done:
                continue
            chars = _SCHEME_CHARS if stem == "://" else _KEY_CHARS
            start = i
            while start > 0 and low[start - 1] in chars:
                start -= 1
                if start == last:
                    start = seen
                    break
            last = i
            if start == seen:
                continue
            seen = start
            if stem == "://":
                m, reason = URL_USERINFO.match(s, start), "URL password"
            else:
                m = _PAIR.match(s, start)
                reason = self.secret_key(m.group("key")) if m is not None else None
            if m is None or reason is None:
                continue
            a, b = m.span("value")
            value = s[a:b]
            quote = value[0] if value[0] in "'\"" else ("\\\"" if value.startswith("\\\"") else "")
            spans.append((a, b, f"{quote}{marker(reason)}{quote}"))
            done = b
        if not spans:
            return s
        out, pos = [], 0
        for a, b, new in spans:
            out += (s[pos:a], new)
            pos = b
        out.append(s[pos:])
        new = "".join(out)
        return s if new == s else new

    # -- data -------------------------------------------------------------------------------------------------------
    def value(self, obj: Any, _depth: int = 0) -> Any:
        """A copy of ``obj`` (dicts, lists, tuples, sets of anything) with the values of secret keys replaced and
        strings scrubbed as text; other objects are returned as they are."""
        if isinstance(obj, str):
            return self.text(obj)
        if _depth > _MAX_DEPTH:
            return obj
        if isinstance(obj, Mapping):
            out = {}
            for k, v in obj.items():
                reason = self.secret_key(k)
                out[k] = marker(reason) if reason is not None else self.value(v, _depth + 1)
            return out
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [self.value(v, _depth + 1) for v in obj]
            return items if isinstance(obj, list) else tuple(items) if isinstance(obj, tuple) else type(obj)(items)
        return obj

    def json_text(self, s: str) -> str:
        """A JSON document scrubbed as data (so it stays valid JSON); text that is not JSON is scrubbed as text."""
        if self.text(s) is s:
            return s
        try:
            return json.dumps(self.value(json.loads(s)), ensure_ascii=False)
        except ValueError:
            return self.text(s)

    def attributes(self, attrs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Scrubbed attributes; ``attrs`` itself (never modified) when nothing needed scrubbing."""
        if _OWN.issuperset(attrs):  # most records carry only the package's own attributes: one C-level check
            return attrs
        out = attrs
        for key, value in attrs.items():
            verdict = self._verdicts.get(key) or self._verdict(key)
            if verdict is _SKIP:
                continue
            if verdict is _SEARCH or verdict is _JSON:
                if isinstance(value, str):
                    new = self.text(value) if verdict is _SEARCH else self.json_text(value)
                elif isinstance(value, (list, tuple)):  # OpenTelemetry's sequence attributes
                    new = tuple(self.text(v) if isinstance(v, str) else v for v in value)
                    new = value if new == tuple(value) else new
                else:
                    continue
                if new is value:
                    continue
            else:
                new = marker(verdict)
            if out is attrs:
                out = dict(attrs)
            out[key] = new
        # an experiment event's value whose key is a secret: exp.log_param('api_key', 'x')
        key = attrs.get(KEY)
        if key is not None and VALUE in attrs:
            reason = self.secret_key(key)
            if reason is not None:
                out = dict(out) if out is attrs else out
                out[VALUE] = json.dumps(marker(reason))
        return out


def default_scrubber() -> Scrubber | None:
    """The process's scrubber as the settings say (OMTEL_SCRUB, OMTEL_SCRUB_PATTERNS); None when turned off. One
    per setting, so its cache of key verdicts is shared, and a reset of the settings (the CLI) is followed."""
    cfg = settings()
    return _scrubber(cfg.scrub_patterns) if cfg.scrub else None


@lru_cache(maxsize=4)
def _scrubber(patterns: tuple[str, ...]) -> Scrubber:
    return Scrubber(patterns)


class ScrubbingSpanProcessor(SpanProcessor):
    """Hands ``inner`` a copy of each ended span with its attributes and event attributes scrubbed (the span
    itself when nothing needed it). The SDK's ended spans are read-only, and each processor of a provider gets the
    same one, so every destination's processor is wrapped: the store's and a collector's alike."""

    def __init__(self, inner: SpanProcessor, scrubber: Scrubber):
        self.inner = inner
        self.scrubber = scrubber

    def on_start(self, span, parent_context=None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(self.scrub(span))

    def scrub(self, span: ReadableSpan) -> ReadableSpan:
        scrub = self.scrubber.attributes
        attrs = span.attributes or {}
        new_attrs = scrub(attrs)
        events, changed = [], new_attrs is not attrs
        for event in span.events or ():
            event_attrs = event.attributes or {}
            new = scrub(event_attrs)
            if new is not event_attrs:
                event, changed = SpanEvent(event.name, new, event.timestamp), True
            events.append(event)
        if not changed:
            return span
        return ReadableSpan(name=span.name, context=span.context, parent=span.parent, resource=span.resource,
                            attributes=new_attrs, events=events, links=span.links, kind=span.kind,
                            status=span.status, start_time=span.start_time, end_time=span.end_time,
                            instrumentation_scope=span.instrumentation_scope)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def scrubbing(processor: SpanProcessor) -> SpanProcessor:
    """``processor`` behind a ``ScrubbingSpanProcessor``, unless scrubbing is turned off."""
    scrubber = default_scrubber()
    return processor if scrubber is None else ScrubbingSpanProcessor(processor, scrubber)
