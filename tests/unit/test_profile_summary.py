"""The benchmark's profile summary: where each thread of a sampled process spent its time."""

from __future__ import annotations

from bench.profile import summarize

FOLDED = "\n".join(
    [
        "thread (11): MainThread;run_flow (/src/streamlane/flowrun.py:80);"
        "write_batch (/src/sinks/kafka.py:138);to_list (polars/series/series.py:4858) 30",
        "thread (11): MainThread;run_flow (/src/streamlane/flowrun.py:80);"
        "next_batch (/src/streamlane/source.py:246) 50",
        "thread (11): MainThread;run_flow (/src/streamlane/flowrun.py:80) 20",
        "thread (12): decode-pizza.orders_0;_worker (concurrent/futures/thread.py:81) 90",
        "thread (12): decode-pizza.orders_0;_worker (concurrent/futures/thread.py:85);"
        "decode_batch (/src/streamlane/decode.py:387);collect (polars/engine.py:410) 10",
        "thread (13): broker-watch;_run (/src/streamlane/brokerwatch.py:69) 100",
        "thread (14): Thread-3 (process_request_thread);readinto (socket.py:706) 2",
        "thread (15): Thread-3 (process_request_thread);write (socketserver.py:834) 1",
    ]
)


def test_threads_that_did_several_things_come_first_with_their_places() -> None:
    lines = summarize(FOLDED)
    assert lines[:4] == [
        "MainThread: 100 samples",
        "   50.0%  next_batch (streamlane/source.py:246)",
        "   30.0%  write_batch (sinks/kafka.py:138) → to_list (polars/series/series.py:4858)",
        "   20.0%  run_flow (streamlane/flowrun.py:80)",
    ]
    assert lines[4:7] == [
        "decode-pizza.orders_0: 100 samples",
        "   90.0%  (outside the project's code) → _worker (concurrent/futures/thread.py:81)",
        "   10.0%  decode_batch (streamlane/decode.py:387) → collect (polars/engine.py:410)",
    ]


def test_waiting_and_short_lived_threads_are_only_named() -> None:
    last = summarize(FOLDED)[-1]
    assert last == (
        "also sampled (waiting, short-lived or not shown): "
        "Thread-3 (process_request_thread), broker-watch"
    )
    assert len(summarize(FOLDED)) == 8


def test_lines_that_are_not_stacks_are_skipped() -> None:
    folded = (
        "\nnot a stack\nthread (1): Main;f (/src/flows/x.py:1) 3\nthread (1): Main;g (y.py:2) x\n"
    )
    assert summarize(folded) == ["also sampled (waiting, short-lived or not shown): Main"]
