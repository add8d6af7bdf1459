"""Id generation and validation of incoming ids."""

from __future__ import annotations

import multiprocessing
import re

from hypothesis import given
from hypothesis import strategies as st

from faultlens._ids import new_id, new_trace_ids, normalize_id

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def test_generated_ids_are_hex_and_distinct() -> None:
    """new_id gives 32 lower-case hex digits, never repeating."""
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    trace, span = new_trace_ids()
    assert re.fullmatch(r"[0-9a-f]{32}", trace)
    assert re.fullmatch(r"[0-9a-f]{16}", span)


def _ids_in_child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put([new_id() for _ in range(500)])


def test_ids_unique_across_forked_processes() -> None:
    """Forked children never generate the ids their parent or siblings do."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ids_in_child, args=(queue,)) for _ in range(3)]
    for p in procs:
        p.start()
    seen = [new_id() for _ in range(500)]
    for _ in procs:
        seen.extend(queue.get(timeout=30))
    for p in procs:
        p.join()
    assert len(set(seen)) == len(seen) == 2000


def test_accepted_forms_are_normalised() -> None:
    """UUIDs lose dashes and case, hex is lowered, ULIDs are upper-cased, tokens kept."""
    assert (
        normalize_id("3F2504E0-4F89-11D3-9A0C-0305E82C3301") == "3f2504e04f8911d39a0c0305e82c3301"
    )
    assert normalize_id("3F2504E04F8911D39A0C0305E82C3301") == "3f2504e04f8911d39a0c0305e82c3301"
    assert normalize_id("01arz3ndektsv4rrffq69g5fav") == "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    assert normalize_id("req_abc-123.x:y") == "req_abc-123.x:y"
    assert normalize_id(b"abc123") == "abc123"
    assert normalize_id("a" * 128) == "a" * 128


def test_unsafe_ids_are_rejected() -> None:
    """Control characters, CR/LF, spaces, quotes, non-ASCII and over-long values are refused."""
    for bad in [
        "",
        "a b",
        "a\r\nX-Evil: 1",
        "a\x00",
        "caf\u00e9",
        "a" * 129,
        '"quoted"',
        "<script>",
        "-leading-dash",
        b"\xff\xfe",
        "tab\there",
    ]:
        assert normalize_id(bad) is None, bad


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_and_are_safe(raw: bytes) -> None:
    """Any bytes either normalise to a safe token or are rejected."""
    result = normalize_id(raw)
    assert result is None or SAFE.fullmatch(result)


@given(st.text(max_size=300))
def test_arbitrary_text_never_crash_and_are_safe(raw: str) -> None:
    """Any text either normalises to a safe token or is rejected."""
    result = normalize_id(raw)
    assert result is None or SAFE.fullmatch(result)


def test_ids_stay_distinct_across_block_refills() -> None:
    """Trace and span ids drawn across many pooled blocks never repeat and keep their form."""
    from faultlens._ids import new_span_id

    traces: set[str] = set()
    spans: set[str] = set()
    for _ in range(1000):  # several blocks of 170 ids
        trace, span = new_trace_ids()
        traces.add(trace)
        spans.add(span)
        spans.add(new_span_id())
    assert len(traces) == 1000
    assert len(spans) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in spans)
