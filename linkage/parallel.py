"""Run the chunks of a job in this process and a forked child at once.

    if can_fork():
        values = run_in_two_processes(work, chunks, progress, finish)

`work(start, stop)` handles items start to stop - 1 and returns a picklable
value. Both processes take the next chunk from a shared counter until none
is left, so a process that other load on the machine slows down takes fewer.
The child is made with fork, so it reads the parent's memory as it was at
the fork, such as an index built before, without pickling it. Only the
values of the child's chunks are pickled, and sent back once it is done.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["SILENCE_LIMIT", "can_fork", "run_in_two_processes"]

Work = Callable[[int, int], Any]
Chunk = tuple[int, int]

# A child that sends nothing for this many seconds after the parent has run
# out of chunks is taken to hang. The child reports each chunk it finishes,
# and a chunk is expected to take far less: the linkage engine's chunks of
# 1,000 accounts take well under a second.
SILENCE_LIMIT = 60.0


def can_fork() -> bool:
    """Say whether a child can be forked safely and has a CPU of its own."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    # Python's documentation calls fork unsafe on macOS, whose system
    # libraries may start threads of their own.
    if sys.platform == "darwin":
        return False
    # A child forked while another thread holds a lock, such as the logging
    # module's, inherits the lock as held and hangs when it takes it.
    if threading.active_count() > 1:
        return False
    # Daemonic processes, such as multiprocessing pool workers, may not start
    # children.
    if multiprocessing.current_process().daemon:
        return False
    # NOTE: a container's CPU quota is not seen here. Under a quota of one
    # CPU, both processes share it and the split costs a little time.
    return _usable_cpus() >= 2


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_in_two_processes(
    work: Work,
    chunks: Sequence[Chunk],
    progress: Callable[[int], None],
    finish: Callable[[Any], Any] = lambda value: value,
    silence_limit: float = SILENCE_LIMIT,
) -> list[Any]:
    """Run work(start, stop) for every chunk, here and in a forked child.

    Returns finish(value) for each chunk's value, in the order of `chunks`.
    `finish` runs in this process: on its own values as soon as each is
    made, and on the child's once they arrive. It suits work whose result
    would take long to pickle, because the child takes more of the chunks
    meanwhile.

    `progress(done)` is called with the items in the chunks finished in both
    processes whenever that number grows.

    If the child fails, for example because it ran out of memory, or sends
    nothing for `silence_limit` seconds once this process has run out of
    chunks, it is stopped and its chunks are run here. So an error in `work`
    is raised here as it would be without a child.
    """
    context = multiprocessing.get_context("fork")
    next_chunk = context.Value("q", 0)
    child = _Child(context, work, chunks, next_chunk)
    values: dict[int, Any] = {}
    done = reported = 0

    def report() -> None:
        # A failed child's chunks are counted again when they are run here,
        # so the count only goes up once it passes what was reported.
        nonlocal reported
        if done + child.done > reported:
            reported = done + child.done
            progress(reported)

    try:
        while (number := _take_chunk(next_chunk, len(chunks))) is not None:
            start, stop = chunks[number]
            values[number] = finish(work(start, stop))
            done += stop - start
            child.read_sent()
            report()
        child.wait(silence_limit, report)
        for number, value in child.values.items():
            values[number] = finish(value)

        # The chunks that a failed child took and did not send back.
        for number, (start, stop) in enumerate(chunks):
            if number not in values:
                values[number] = finish(work(start, stop))
                done += stop - start
                report()
    finally:
        child.stop()
    return [values[number] for number in range(len(chunks))]


def _take_chunk(next_chunk, count: int) -> int | None:
    """Return the number of the next chunk that no process has taken, or None."""
    with next_chunk.get_lock():
        number = next_chunk.value
        if number >= count:
            return None
        next_chunk.value = number + 1
        return number


class _Child:
    """The parent's handle on the forked child and what it has sent."""

    def __init__(self, context, work: Work, chunks: Sequence[Chunk], next_chunk):
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run_child, args=(work, chunks, next_chunk, sender), daemon=True
        )
        self._process.start()
        sender.close()
        self.done = 0
        self.values: dict[int, Any] = {}
        self.finished = False

    def read_sent(self) -> None:
        """Read the messages that the child has sent so far."""
        while not self.finished and self._receiver.poll():
            self._read_message()

    def wait(self, silence_limit: float, progress: Callable[[], None]) -> None:
        """Read messages until the child sends its values or fails.

        The child fails when it exits without sending its values or sends
        nothing for `silence_limit` seconds, and then no values are kept.
        `progress` is called after each chunk that it reports.
        """
        while not self.finished:
            if not self._receiver.poll(silence_limit):
                self.done = 0
                self.finished = True
            elif self._read_message() == "progress":
                progress()

    def _read_message(self) -> str:
        try:
            kind, payload = self._receiver.recv()
        except (EOFError, OSError):
            # The chunks that the child reported are lost with it.
            self.done = 0
            self.finished = True
            return "exit"
        if kind == "values":
            self.values = payload
            self.finished = True
        else:
            self.done = payload
        return kind

    def stop(self) -> None:
        self._receiver.close()
        if self._process.is_alive():
            # SIGKILL, because the child inherits the parent's signal
            # handlers, and one of them may ignore SIGTERM.
            self._process.kill()
        self._process.join()


def _run_child(
    work: Work, chunks: Sequence[Chunk], next_chunk, sender: Connection
) -> None:
    # The child lives only for this job, so the objects inherited from the
    # parent are left out of the garbage collector's scans. Scanning them
    # would take time and write to every memory page that contains one.
    gc.freeze()
    values = {}
    done = 0
    try:
        while (number := _take_chunk(next_chunk, len(chunks))) is not None:
            start, stop = chunks[number]
            values[number] = work(start, stop)
            done += stop - start
            sender.send(("progress", done))
        # The values go in one message at the end, because a message larger
        # than the pipe's buffer blocks the child until the parent, busy
        # with its own chunks, reads it.
        sender.send(("values", values))
    except Exception:
        # The parent finds the pipe closed without the values and runs the
        # child's chunks itself, which raises the error there with its usual
        # traceback.
        return
    finally:
        sender.close()
