"""The workspace context ring (workspace.py): trimming, dedup by similarity, eviction, versions,
the token budget's fit, and reads from another thread while the event loop adds."""

from __future__ import annotations

import threading

from ember.config import CompletionSettings
from ember.wire import ContextAddParams, ContextChunk
from ember.workspace import MAX_CHUNK_CHARS, MAX_CHUNK_LINES, Chunk, Workspace, fit, trim


def ws(**settings) -> Workspace:
    return Workspace(CompletionSettings(**settings))


def block(name: str, lines: int = 10) -> str:
    return "\n".join(f"{name}_{i} = compute_{name}({i})" for i in range(lines))


def add(w: Workspace, client, *texts: str, path: str | None = "a.py", kind: str = "edit") -> bool:
    return w.add(client, [ContextChunk(text=t, path=path, kind=kind) for t in texts])


def test_chunks_are_kept_oldest_first_per_client():
    w = ws()
    add(w, "A", block("one"), block("two"))
    add(w, "B", block("three"))
    assert [c.text for c in w.chunks("A")] == [block("one"), block("two")]
    assert w.chunks("B") == [Chunk("a.py", block("three"), "edit")]
    assert w.chunks("nobody") == []


def test_the_wire_params_go_in_as_the_handler_passes_them():
    w = ws()
    p = ContextAddParams.model_validate({"chunks": [{"text": "def f():\n    return 1\n", "kind": "yank"}]})
    assert w.add("A", p.chunks)
    assert w.chunks("A") == [Chunk(None, "def f():\n    return 1", "yank")]


def test_oldest_chunks_are_evicted_beyond_context_chunks():
    w = ws(context_chunks=3)
    for name in ("a", "b", "c", "d", "e"):
        add(w, "A", block(name))
    assert [c.text for c in w.chunks("A")] == [block("c"), block("d"), block("e")]
    # Eviction inside one notification too: the newest end of the batch survives.
    add(w, "B", *(block(n) for n in "vwxyz"))
    assert [c.text for c in w.chunks("B")] == [block("x"), block("y"), block("z")]


def test_a_similar_chunk_replaces_the_kept_one_at_the_newest_end():
    w = ws()
    original = block("f", 20)
    add(w, "A", original, block("g"))
    edited = original.replace("f_7 = compute_f(7)", "f_7 = compute_f(70)")  # 19 of 20 lines shared
    add(w, "A", edited)
    assert [c.text for c in w.chunks("A")] == [block("g"), edited]


def test_a_chunk_below_the_similarity_threshold_is_kept_beside_the_other():
    w = ws()
    original = block("f", 10)
    lines = original.split("\n")
    changed = "\n".join(lines[:8] + ["other = 1", "another = 2"])  # 8 of 10 lines: Dice 0.8
    add(w, "A", original, changed)
    assert [c.text for c in w.chunks("A")] == [original, changed]


def test_similarity_ignores_indentation_and_blank_lines():
    w = ws()
    add(w, "A", "def f():\n    x = 1\n    return x\n", block("other"))
    add(w, "A", "x = 1\n\nreturn x\ndef f():", path="b.py", kind="yank")
    assert [c.kind for c in w.chunks("A")] == ["edit", "yank"]
    assert len(w.chunks("A")) == 2


def test_the_same_text_again_moves_it_to_the_newest_end():
    w = ws()
    add(w, "A", block("a"), block("b"))
    v = w.version("A")
    assert add(w, "A", block("a"))
    assert [c.text for c in w.chunks("A")] == [block("b"), block("a")]
    assert w.version("A") > v


def test_version_changes_only_when_the_ring_does():
    w = ws()
    assert w.version("A") == 0
    assert add(w, "A", block("a"))
    v1 = w.version("A")
    assert v1 > 0
    assert not add(w, "A", block("a"))  # already the newest: nothing changes
    assert w.version("A") == v1
    assert not add(w, "A", "   \n\t\n")  # nothing to keep
    assert w.version("A") == v1
    add(w, "A", block("b"))
    v2 = w.version("A")
    assert v2 > v1
    w.forget("A")
    assert w.version("A") == 0 and w.chunks("A") == []
    add(w, "A", block("a"))
    assert w.version("A") > v2  # never reused after forget: a cached prefill of v1 cannot match


def test_on_change_is_called_after_a_change_only():
    w = ws()
    seen: list[object] = []
    w.on_change = lambda client: seen.append((client, len(w.chunks(client))))
    add(w, "A", block("a"))
    add(w, "A", block("a"))
    add(w, "A", block("b"))
    assert seen == [("A", 1), ("A", 2)]


def test_a_failing_on_change_does_not_lose_the_chunk(caplog):
    w = ws()

    def boom(client):
        raise RuntimeError("listener bug")

    w.on_change = boom
    assert add(w, "A", block("a"))
    assert [c.text for c in w.chunks("A")] == [block("a")]
    assert "on_change failed" in caplog.text


def test_nothing_is_kept_when_context_is_off():
    w = ws(context=False)
    calls: list[object] = []
    w.on_change = calls.append
    assert not add(w, "A", block("a"))
    assert w.chunks("A") == [] and w.version("A") == 0 and calls == [] and w.clients() == 0


def test_forget_drops_one_client_only():
    w = ws()
    add(w, "A", block("a"))
    add(w, "B", block("b"))
    w.forget("A")
    w.forget("never-seen")
    assert w.chunks("A") == [] and [c.text for c in w.chunks("B")] == [block("b")]
    assert w.clients() == 1


# -- trimming ----------------------------------------------------------------------------------


def test_a_long_chunk_keeps_the_lines_around_its_middle():
    text = "\n".join(f"line {i:04d}" for i in range(1000))  # 10 KB: sliced first, then lines
    out = trim(text).split("\n")
    assert len(out) == MAX_CHUNK_LINES
    middle = [int(line.split()[1]) for line in out]
    assert middle == list(range(middle[0], middle[0] + MAX_CHUNK_LINES))  # contiguous, whole lines
    assert middle[0] <= 500 <= middle[-1] and abs((middle[0] + middle[-1]) / 2 - 500) <= 1


def test_a_chunk_of_long_lines_is_bounded_by_characters():
    text = "\n".join(f"{i:04d}" + "x" * 300 for i in range(60))
    out = trim(text)
    assert len(out) <= MAX_CHUNK_CHARS
    kept = out.split("\n")
    assert all(len(line) == 304 for line in kept)  # whole lines only
    assert len(kept) == MAX_CHUNK_CHARS // 305
    numbers = [int(line[:4]) for line in kept]
    assert numbers[0] <= 30 <= numbers[-1]


def test_a_huge_chunk_is_trimmed_without_keeping_partial_lines():
    lines = [f"row_{i:07d} = {i:07d}" for i in range(200_000)]  # 4.4 MB of equal lines
    out = trim("\n".join(lines)).split("\n")
    assert len(out) == MAX_CHUNK_LINES
    first = lines.index(out[0])
    assert out == lines[first:first + MAX_CHUNK_LINES]  # whole, contiguous lines
    assert abs(first + MAX_CHUNK_LINES / 2 - 100_000) <= 2


def test_one_huge_line_keeps_a_bounded_piece_and_crlf_becomes_lf():
    assert len(trim("y" * 1_000_000)) == MAX_CHUNK_CHARS
    assert trim("\r\n\r\na = 1\r\nb = 2   \r\n\r\n") == "a = 1\nb = 2"


def test_the_ring_keeps_the_trimmed_text():
    w = ws()
    add(w, "A", "\n".join(f"v{i} = {i}" for i in range(500)))
    (chunk,) = w.chunks("A")
    assert len(chunk.text.split("\n")) == MAX_CHUNK_LINES and "v250 = 250" in chunk.text


# -- the token budget --------------------------------------------------------------------------


def test_fit_keeps_the_newest_whole_chunks_within_the_budget_oldest_first():
    chunks = [Chunk("a", "a" * 40, "edit"), Chunk("b", "b" * 10, "edit"), Chunk("c", "c" * 30, "edit")]
    tokens = lambda c: len(c.text) // 10  # noqa: E731
    assert fit(chunks, tokens, 100) == chunks
    assert fit(chunks, tokens, 4) == [chunks[1], chunks[2]]
    assert fit(chunks, tokens, 7) == [chunks[1], chunks[2]]  # a: 4 more would be 8
    assert fit(chunks, tokens, 2) == []  # the newest does not fit: nothing older jumps the queue
    assert fit([], tokens, 10) == []


# -- threads -----------------------------------------------------------------------------------


def test_reads_from_another_thread_see_whole_rings_while_chunks_arrive():
    """The worker thread reads while the event loop adds: every read is a consistent ring (within
    the bound, no duplicates, oldest first)."""
    w = ws(context_chunks=8)
    stop = threading.Event()
    problems: list[str] = []

    def reader():
        while not stop.is_set():
            got = w.chunks("A")
            if len(got) > 8:
                problems.append(f"{len(got)} chunks")
            numbers = [int(c.path) for c in got]
            if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
                problems.append(f"order {numbers}")
            w.version("A")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(3000):
            w.add("A", [Chunk(str(i), block(f"n{i}", 5), "edit")])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert [int(c.path) for c in w.chunks("A")] == list(range(2992, 3000))


def test_the_line_index_holds_only_the_kept_chunks():
    """The index that finds similar chunks forgets evicted and replaced ones (no leak, no stale
    matches)."""
    w = ws(context_chunks=4)
    for i in range(50):
        add(w, "A", block(f"n{i % 7}", 3 + i % 5))
    ring = w._rings["A"]
    assert len(ring.entries) == 4
    kept = set().union(*(e.lines for e in ring.entries))
    assert set(ring.index) == kept
    assert all(holders <= set(ring.entries) for holders in ring.index.values())


def test_the_service_keeps_a_ring_per_client_and_forgets_it_when_the_client_goes():
    from ember.config import Settings
    from ember.service import Service

    service = Service(Settings())
    service.connections.add("A")
    add(service.workspace, "A", block("a"))
    add(service.workspace, "B", block("b"))
    service.client_gone("A")
    assert service.workspace.chunks("A") == [] and "A" not in service.connections
    assert [c.text for c in service.workspace.chunks("B")] == [block("b")]
    service.stop()  # nothing was counted: the stats file is not written
