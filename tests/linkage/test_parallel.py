import os
import threading

import pytest

from linkage.parallel import can_fork, run_in_two_processes

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="needs a platform that can fork"
)

CHUNKS = [(0, 3), (3, 6), (6, 7)]


def squares(start, stop):
    return [(number * number, os.getpid()) for number in range(start, stop)]


def test_two_processes_values_in_chunk_order():
    reported = []

    values = run_in_two_processes(squares, CHUNKS, reported.append)

    assert [[square for square, _ in value] for value in values] == [
        [0, 1, 4],
        [9, 16, 25],
        [36],
    ]
    assert reported[-1] == 7
    assert reported == sorted(reported)


def test_two_processes_finish_runs_here():
    finished_in = []

    def finish(value):
        finished_in.append(os.getpid())
        return [square for square, _ in value]

    values = run_in_two_processes(squares, CHUNKS, lambda done: None, finish)

    assert values == [[0, 1, 4], [9, 16, 25], [36]]
    assert finished_in == [os.getpid()] * 3


def test_two_processes_child_takes_chunks():
    def slow_squares(start, stop):
        threading.Event().wait(0.02)
        return squares(start, stop)

    chunks = [(start, start + 1) for start in range(20)]

    values = run_in_two_processes(slow_squares, chunks, lambda done: None)

    pids = {pid for value in values for _, pid in value}
    assert os.getpid() in pids
    assert len(pids) == 2


def test_two_processes_child_failure_runs_chunks_here():
    parent = os.getpid()

    def fails_in_child(start, stop):
        if os.getpid() != parent:
            raise MemoryError("out of memory in the child")
        threading.Event().wait(0.05)
        return squares(start, stop)

    reported = []
    values = run_in_two_processes(fails_in_child, CHUNKS, reported.append)

    assert [[square for square, _ in value] for value in values][1] == [9, 16, 25]
    assert {pid for value in values for _, pid in value} == {parent}
    assert reported[-1] == 7
    assert reported == sorted(set(reported))


def test_two_processes_progress_rises_after_child_failure():
    parent = os.getpid()
    chunks_in_child = []

    def fails_on_second_chunk_in_child(start, stop):
        threading.Event().wait(0.01)
        if os.getpid() != parent:
            chunks_in_child.append(start)
            if len(chunks_in_child) == 2:
                raise MemoryError("out of memory in the child")
        return squares(start, stop)

    chunks = [(start, start + 1) for start in range(20)]
    reported = []
    values = run_in_two_processes(
        fails_on_second_chunk_in_child, chunks, reported.append
    )

    assert [len(value) for value in values] == [1] * 20
    assert {pid for value in values for _, pid in value} == {parent}
    assert reported == sorted(set(reported))
    assert reported[-1] == 20


def test_two_processes_error_raised_in_parent():
    def always_fails(start, stop):
        raise ValueError(f"cannot handle {start} to {stop}")

    with pytest.raises(ValueError, match="cannot handle"):
        run_in_two_processes(always_fails, CHUNKS, lambda done: None)


def test_two_processes_silent_child_stopped():
    parent = os.getpid()

    def hangs_in_child(start, stop):
        if os.getpid() != parent:
            threading.Event().wait()
        threading.Event().wait(0.05)
        return squares(start, stop)

    values = run_in_two_processes(
        hangs_in_child, CHUNKS, lambda done: None, silence_limit=0.2
    )

    assert {pid for value in values for _, pid in value} == {parent}
    assert [len(value) for value in values] == [3, 3, 1]


def test_can_fork_false_with_other_threads():
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert can_fork() is False
    finally:
        release.set()
        thread.join()
