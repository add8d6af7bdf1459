"""faultlens.capture(): error events built from exceptions."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlens
from faultlens import events
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError, _capture
from faultlens.errors._breadcrumbs import get_buffer
from faultlens.errors._capture import CaptureSettings, set_capture_settings
from faultlens.testing import capture_events


@pytest.fixture(autouse=True)
def _capture_defaults() -> Iterator[None]:
    """Default capture settings and empty breadcrumbs around each test."""
    set_capture_settings(CaptureSettings())
    buffer = get_buffer()
    if buffer is not None:
        buffer.clear()
    yield
    set_capture_settings(CaptureSettings())


def _raise(exc: BaseException) -> BaseException:
    """Raise ``exc`` and return it caught, with its traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def _capture_one(exc: BaseException, **fields: Any) -> events.Event:
    with capture_events(events.ERROR) as captured:
        event_id = faultlens.capture(exc, **fields)
    assert len(captured) == 1
    assert captured[0].id == event_id
    return captured[0]


def _dumps(event: events.Event) -> str:
    return orjson.dumps(event.to_dict()).decode()


# --- the event -----------------------------------------------------------------------------


def test_capture_publishes_an_error_event_tied_to_the_context() -> None:
    """capture() publishes one error event carrying the correlation and returns its id."""
    with faultlens.correlate(user_id="u1", tenant_id="t1") as ctx:
        event = _capture_one(_raise(ValueError("bad input")))
    assert event.kind == "error"
    assert event.name == "ValueError"
    assert (event.correlation_id, event.trace_id, event.span_id) == (
        ctx.correlation_id,
        ctx.trace_id,
        ctx.span_id,
    )
    assert (event.user_id, event.tenant_id) == ("u1", "t1")
    payload = event.payload
    assert payload["type"] == "ValueError"
    assert payload["message"] == "bad input"
    assert payload["mechanism"] == {"type": "capture", "handled": True}
    assert payload["context"]["correlation_id"] == ctx.correlation_id
    assert payload["context"]["user_id"] == "u1"


def test_event_payload_is_json_serialisable() -> None:
    """The whole event survives the stdlib json module (plain JSON types only)."""

    class Odd:
        def __repr__(self) -> str:
            return "Odd(password=hunter2)"

    with faultlens.correlate():
        event = _capture_one(_raise(KeyError("k")), thing=Odd(), items={1, 2}, nested={"t": (1,)})
    text = json.dumps(event.to_dict())
    assert "hunter2" not in text
    assert event.payload["fields"]["thing"] == "Odd(password=[REDACTED])"


def test_type_names_carry_their_module() -> None:
    """Built-in exceptions are named bare, others module.qualname."""

    class LocalError(Exception):
        pass

    event = _capture_one(_raise(LocalError("x")))
    assert event.payload["type"] == f"{__name__}.{LocalError.__qualname__}"


def test_classification_is_included() -> None:
    """The event carries faultlens.errors.classify(exc).to_dict()."""
    from faultlens.errors import classify

    exc = _raise(TimeoutError("slow"))
    event = _capture_one(exc)
    assert event.payload["classification"] == json.loads(json.dumps(classify(exc).to_dict()))


def test_fields_and_fingerprint_pass_through_redacted() -> None:
    """Extra fields are redacted by key and value; a fingerprint is kept as a list."""
    event = _capture_one(
        _raise(ValueError("x")),
        order_id=7,
        api_key="sk-live-123",
        note="token=abc123",
        fingerprint=["payments", "declined"],
    )
    assert event.payload["fields"] == {
        "order_id": 7,
        "api_key": "[REDACTED]",
        "note": "token=[REDACTED]",
    }
    assert event.payload["fingerprint"] == ["payments", "declined"]
    assert "fingerprint" not in _capture_one(_raise(ValueError("y"))).payload


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("one-group", ["one-group"]),
        (("db", 42), ["db", "42"]),
        (42, ["42"]),
        (["token=abc"], ["token=[REDACTED]"]),
    ],
)
def test_fingerprint_is_normalised_to_strings(given: Any, kept: list[str]) -> None:
    """A fingerprint string, sequence or odd value becomes a list of redacted strings."""
    event = _capture_one(_raise(ValueError("x")), fingerprint=given)
    assert event.payload["fingerprint"] == kept


def test_system_context_is_present() -> None:
    """Python, platform, host, pid, memory and CPU time of the process are included."""
    system = _capture_one(_raise(ValueError("x"))).payload["system"]
    assert system["python"] == ".".join(map(str, sys.version_info[:3]))
    for key in ("implementation", "platform", "hostname", "threads", "cpu_user_s"):
        assert key in system
    assert system["pid"] > 0
    assert system["max_rss_bytes"] > 0
    if sys.platform.startswith("linux"):
        assert system["rss_bytes"] > 0


def test_journey_and_current_operation_are_included() -> None:
    """Finished operations of the correlation and the running ones form the journey."""
    with faultlens.correlate():
        with faultlens.operation("load_cart", layer="infrastructure"):
            pass
        with faultlens.operation("checkout", layer="service"):
            with faultlens.operation("charge", layer="infrastructure"):
                event = _capture_one(_raise(ValueError("declined")))
    payload = event.payload
    assert payload["operation"]["name"] == "charge"
    assert payload["operation"]["path"] == ["checkout", "charge"]
    assert [(s["name"], s["layer"], s["outcome"]) for s in payload["journey"]] == [
        ("load_cart", "infrastructure", "ok"),
        ("checkout", "service", "running"),
        ("charge", "infrastructure", "running"),
    ]


def test_outside_any_context_the_event_has_no_correlation() -> None:
    """Without a context the event is still built, with null correlation fields."""
    event = _capture_one(_raise(ValueError("x")))
    assert event.correlation_id is None
    assert event.payload["context"] is None
    assert event.payload["journey"] == []


# --- capture once, nobody listening ---------------------------------------------------------


def test_nobody_listening_returns_none_and_marks_nothing() -> None:
    """Without an error subscriber nothing is built, and a later capture still records."""
    exc = _raise(ValueError("x"))
    assert faultlens.capture(exc) is None
    event = _capture_one(exc)
    assert event.payload["type"] == "ValueError"


def test_same_exception_is_captured_once() -> None:
    """A second capture of one exception object returns the first id and publishes nothing."""
    exc = _raise(ValueError("x"))
    with capture_events(events.ERROR) as captured:
        first = faultlens.capture(exc)
        second = faultlens.capture(exc, extra=1)
    assert first is not None
    assert second == first
    assert len(captured) == 1


def test_captured_once_even_when_nobody_listens_later() -> None:
    """After a recorded capture, capture() keeps returning that id with no subscriber."""
    exc = _raise(ValueError("x"))
    first = _capture_one(exc).id
    assert faultlens.capture(exc) == first


def test_a_copy_of_a_captured_exception_is_a_new_error() -> None:
    """The mark belongs to one object: a copy carrying the attribute is captured anew."""
    exc = _raise(ValueError("x"))
    first = _capture_one(exc).id
    assert _capture_one(copy.copy(exc)).id != first


class _Refusing(Exception):
    """An exception that refuses new attributes."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"read-only: {name}")


class _RefusingNoWeakref(Exception):
    """Refuses attributes and weak references."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"read-only: {name}")


@pytest.mark.parametrize("cls", [_Refusing, _RefusingNoWeakref])
def test_capture_once_for_exceptions_refusing_attributes(cls: type[Exception]) -> None:
    """Exceptions that refuse the mark are still captured exactly once."""
    exc = _raise(cls("x"))
    with capture_events(events.ERROR) as captured:
        first = faultlens.capture(exc)
        second = faultlens.capture(exc)
    assert first is not None
    assert first == second
    assert len(captured) == 1


def test_a_subscriber_capturing_the_same_exception_does_not_recurse() -> None:
    """Capturing the exception again from inside a subscriber returns the same id."""
    seen: list[str | None] = []
    exc = _raise(ValueError("x"))

    def subscriber(event: events.Event) -> None:
        seen.append(faultlens.capture(exc))

    with events.subscribe(subscriber, kinds=[events.ERROR]):
        event_id = faultlens.capture(exc)
    assert seen == [event_id]


# --- chains and groups ---------------------------------------------------------------------


def test_explicit_cause_is_in_the_chain() -> None:
    """raise ... from exc records the cause with its own frames."""
    try:
        try:
            raise KeyError("missing")
        except KeyError as inner:
            raise LookupError("lookup failed") from inner
    except LookupError as outer:
        exc = outer
    chain = _capture_one(exc).payload["chain"]
    assert [(link["relation"], link["type"]) for link in chain] == [("cause", "KeyError")]
    assert chain[0]["message"] == "'missing'"
    assert chain[0]["frames"][-1]["function"].endswith("test_explicit_cause_is_in_the_chain")


def test_implicit_context_is_in_the_chain() -> None:
    """An exception raised while handling another records it as context."""
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("second")  # noqa: B904 (the implicit context is the point)
    except ValueError as outer:
        exc = outer
    chain = _capture_one(exc).payload["chain"]
    assert [(link["relation"], link["type"]) for link in chain] == [("context", "KeyError")]


def test_suppressed_context_is_left_out() -> None:
    """raise ... from None hides the context, as the traceback printer does."""
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("second") from None
    except ValueError as outer:
        exc = outer
    assert "chain" not in _capture_one(exc).payload


def test_cause_wins_over_context_along_a_long_chain() -> None:
    """Each link follows __cause__ when set, else an unsuppressed __context__."""
    a = _raise(OSError("a"))
    b = _raise(TimeoutError("b"))
    b.__cause__ = a
    b.__context__ = KeyError("ignored")
    c = _raise(RuntimeError("c"))
    c.__context__ = b
    chain = _capture_one(c).payload["chain"]
    assert [(link["relation"], link["type"]) for link in chain] == [
        ("context", "TimeoutError"),
        ("cause", "OSError"),
    ]


def test_cycles_in_the_chain_end_the_walk() -> None:
    """A chain that loops back is cut at the repeated exception."""
    a = ValueError("a")
    b = KeyError("b")
    a.__context__ = b
    b.__context__ = a
    chain = _capture_one(a).payload["chain"]
    assert [(link["type"], link.get("repeated", False)) for link in chain] == [
        ("KeyError", False),
        ("ValueError", True),
    ]


def test_long_chains_are_capped() -> None:
    """Only max_chain links are kept, and the cut is flagged."""
    set_capture_settings(CaptureSettings(max_chain=3))
    head: BaseException = ValueError("0")
    top = head
    for i in range(1, 50):
        nxt = ValueError(str(i))
        head.__cause__ = nxt
        head = nxt
    payload = _capture_one(top).payload
    assert [link["message"] for link in payload["chain"]] == ["1", "2", "3"]
    assert payload["chain_truncated"] is True


def test_exception_groups_are_walked_nested() -> None:
    """ExceptionGroup members, nested groups and their causes are recorded."""
    try:
        raise KeyError("root cause")
    except KeyError as root:
        caused = ValueError("caused")
        caused.__cause__ = root
    group = ExceptionGroup(
        "outer",
        [caused, ExceptionGroup("inner", [TypeError("t1"), OSError("o1")])],
    )
    payload = _capture_one(_raise(group)).payload
    assert payload["type"] == "ExceptionGroup"
    members = payload["group"]
    assert [m["type"] for m in members] == ["ValueError", "ExceptionGroup"]
    assert members[0]["chain"][0]["type"] == "KeyError"
    assert [m["type"] for m in members[1]["group"]] == ["TypeError", "OSError"]


def test_exception_groups_are_capped() -> None:
    """Members beyond max_exceptions nodes, and groups nested too deep, are counted out."""
    set_capture_settings(CaptureSettings(max_exceptions=5, max_group_depth=1))
    group = ExceptionGroup("many", [ValueError(str(i)) for i in range(20)])
    payload = _capture_one(_raise(group)).payload
    assert len(payload["group"]) == 4
    assert payload["group_omitted"] == 16
    deep = ExceptionGroup("a", [ExceptionGroup("b", [ExceptionGroup("c", [ValueError()])])])
    payload = _capture_one(_raise(deep)).payload
    assert payload["group"][0]["group"] == []
    assert payload["group"][0]["group_omitted"] == 1


def test_a_member_repeated_in_a_group_is_marked() -> None:
    """The same exception object twice in a group is written out once."""
    shared = ValueError("shared")
    payload = _capture_one(_raise(ExceptionGroup("g", [shared, shared]))).payload
    assert [m.get("repeated", False) for m in payload["group"]] == [False, True]


def test_notes_are_included_redacted() -> None:
    """PEP 678 notes are kept, redacted."""
    exc = ValueError("x")
    exc.add_note("while calling with password=hunter2")
    payload = _capture_one(_raise(exc)).payload
    assert payload["notes"] == ["while calling with password=[REDACTED]"]


# --- frames ------------------------------------------------------------------------------


def _deep(n: int) -> None:
    if n == 0:
        raise ValueError("deep")
    _deep(n - 1)


def test_frames_are_outermost_first_with_code_locations() -> None:
    """Frames list file, module, function and line, the raising frame last."""
    try:
        _deep(3)
    except ValueError as exc:
        frames = _capture_one(exc).payload["frames"]
    assert [f["function"] for f in frames] == [
        "test_frames_are_outermost_first_with_code_locations",
        "_deep",
        "_deep",
        "_deep",
        "_deep",
    ]
    assert frames[-1]["filename"] == __file__
    assert frames[-1]["module"] == __name__
    assert frames[-1]["lineno"] == _deep.__code__.co_firstlineno + 2
    assert all(set(f) == {"filename", "module", "function", "lineno", "in_app"} for f in frames)


def test_in_app_flags_stdlib_and_faultlens_frames_out() -> None:
    """Application frames are in app; stdlib, site-packages and faultlens frames are not."""
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        frames = _capture_one(exc).payload["frames"]
    assert frames[0]["in_app"] is True
    assert {f["module"] for f in frames if not f["in_app"]} >= {"json", "json.decoder"}
    with pytest.raises(ConfigurationError) as info:
        CaptureSettings(max_frames=0)
    frames = _capture_one(info.value).payload["frames"]
    ours = [f["in_app"] for f in frames if f["module"].startswith("faultlens")]
    assert ours
    assert not any(ours)


def test_in_app_flags_site_packages_frames_out() -> None:
    """Frames of an installed third-party package are not in app."""
    psutil = pytest.importorskip("psutil")
    with pytest.raises(ValueError, match="pid") as info:
        psutil.Process(-1)
    frames = _capture_one(info.value).payload["frames"]
    assert frames[0]["in_app"] is True
    assert frames[-1]["module"].startswith("psutil")
    assert frames[-1]["in_app"] is False


def test_in_app_include_and_exclude_prefixes() -> None:
    """Configured module prefixes force frames in or out of the app."""
    faultlens.configure(
        log_stream=_Sink(),
        capture=CaptureSettings(in_app_include=("json",), in_app_exclude=(__name__,)),
    )
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        frames = _capture_one(exc).payload["frames"]
    flags = {f["module"]: f["in_app"] for f in frames}
    assert flags[__name__] is False
    assert flags["json"] is True
    assert flags["json.decoder"] is True


def test_frames_are_capped_keeping_both_ends() -> None:
    """A deep stack keeps its outermost and innermost frames and counts the rest."""
    set_capture_settings(CaptureSettings(max_frames=6))
    try:
        _deep(30)
    except ValueError as exc:
        payload = _capture_one(exc).payload
    frames = payload["frames"]
    assert len(frames) == 6
    assert payload["frames_omitted"] == 32 - 6
    assert frames[0]["function"] == "test_frames_are_capped_keeping_both_ends"
    assert frames[-1]["lineno"] == _deep.__code__.co_firstlineno + 2


def test_no_local_variables_by_default() -> None:
    """Frames carry no locals unless capture_locals is set."""
    password = "hunter2"  # noqa: F841 (a local the event must not carry)
    frames = _capture_one(_raise(ValueError("x"))).payload["frames"]
    assert all("locals" not in f for f in frames)


def test_locals_when_asked_are_redacted() -> None:
    """capture_locals=True adds locals of in-app frames, sensitive names and values redacted."""
    set_capture_settings(CaptureSettings(capture_locals=True))
    password = "hunter2"  # noqa: F841
    note = "Bearer abc.def.ghi"  # noqa: F841
    count = 3  # noqa: F841
    try:
        raise ValueError("x")
    except ValueError as exc:
        frames = _capture_one(exc).payload["frames"]
    here = next(f for f in frames if f["function"].endswith("test_locals_when_asked_are_redacted"))
    assert here["locals"]["password"] == "[REDACTED]"
    assert here["locals"]["note"] == "'Bearer [REDACTED]'"
    assert here["locals"]["count"] == "3"


# --- redaction -------------------------------------------------------------------------------

# "Zq" keeps a secret from ever looking like a hex id or a number in the event.
secrets = st.text(
    alphabet="abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=10
).map(lambda s: "Zq" + s)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60, deadline=None)
@given(secret=secrets)
def test_secrets_never_reach_the_event(secret: str) -> None:
    """A secret in the message, a field, a chain member or a note is redacted everywhere."""
    try:
        try:
            raise ConnectionError(f"connect failed: url=https://svc:{secret}@db/x")
        except ConnectionError as inner:
            exc = ValueError(f"login failed password={secret}")
            exc.add_note(f"Authorization: Bearer {secret}")
            raise exc from inner
    except ValueError as outer:
        with faultlens.correlate(note=f"token={secret}"):
            event = _capture_one(
                outer, api_key=secret, detail={"Token": secret, "x": [f"pwd={secret}"]}
            )
    assert secret not in _dumps(event)


# --- never raising ----------------------------------------------------------------------------


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str failed")


class _BadRepr(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


def test_exception_whose_str_raises_is_captured() -> None:
    """A __str__ that raises gives a placeholder message, not a failure."""
    event = _capture_one(_raise(_BadStr()))
    assert event.payload["message"] == "<str() of the exception raised RuntimeError>"
    assert counters.get("errors.capture_failures") == 0


def test_exception_whose_repr_raises_is_captured() -> None:
    """A __repr__ that raises (exception or field value) never breaks the capture."""

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    set_capture_settings(CaptureSettings(capture_locals=True))
    bad = Unprintable()  # noqa: F841 (a local whose repr raises)
    event = _capture_one(_raise(_BadRepr("msg")), thing=Unprintable())
    assert event.payload["message"] == "msg"
    assert event.payload["fields"]["thing"].startswith("<unrepresentable ")


def test_huge_message_is_clipped() -> None:
    """A multi-megabyte message is cut to max_message_chars with a marker."""
    event = _capture_one(_raise(ValueError("x" * 5_000_000)))
    message = event.payload["message"]
    assert message.startswith("x" * 8192)
    assert len(message) < 8300
    assert "truncated" in message


def test_not_an_exception_is_counted_not_raised() -> None:
    """capture() of something that is not an exception returns None and counts it."""
    with capture_events(events.ERROR) as captured:
        assert faultlens.capture("oops") is None  # type: ignore[arg-type]
    assert captured == []
    assert counters.get("errors.capture_failures") == 1


def test_an_internal_failure_still_publishes_a_degraded_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug while building the payload is counted, reported once, and the event still goes out."""

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(_capture, "system_info", broken)
    with faultlens.correlate() as ctx:
        event = _capture_one(_raise(ValueError("x")))
        _capture_one(_raise(ValueError("y")))
    assert event.correlation_id == ctx.correlation_id
    assert event.payload["type"] == "ValueError"
    assert event.payload["capture_error"] == "RuntimeError"
    assert counters.get("errors.capture_failures") == 2
    assert capsys.readouterr().err.count("capturing an error failed") == 1


def test_a_failing_subscriber_does_not_reach_the_caller() -> None:
    """A subscriber that raises is isolated by the bus; capture still returns the id."""

    def broken(event: events.Event) -> None:
        raise RuntimeError("subscriber bug")

    with events.subscribe(broken, kinds=[events.ERROR]):
        assert faultlens.capture(_raise(ValueError("x"))) is not None
    assert counters.get("events.subscriber_errors") == 1


# --- settings -------------------------------------------------------------------------------


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"breadcrumbs": -1},
        {"max_frames": 1},
        {"max_chain": True},
        {"in_app_include": "myapp"},
        {"in_app_exclude": ("",)},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    """Bad CaptureSettings raise ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        CaptureSettings(**kwargs)


def test_configure_applies_capture_settings() -> None:
    """configure(capture=...) is read back from get_config() and used by capture()."""
    settings = CaptureSettings(max_chain=1)
    config = faultlens.configure(log_stream=_Sink(), capture=settings)
    assert config.capture is settings
    a = _raise(ValueError("a"))
    a.__cause__ = KeyError("b")
    a.__cause__.__cause__ = KeyError("c")
    assert len(_capture_one(a).payload["chain"]) == 1
