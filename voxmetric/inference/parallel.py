"""Embedding many files in worker processes (``--jobs N``).

One process with N threads scales poorly on these networks' small convolutions, and slows
down badly when another job holds a core (its threads wait for one another): on the 2-core
development machine, 2,000 files of 3.4 s go 1.32x (sinctdnn-aam) and 1.22x (ecapa-aam)
faster with 2 threads than with 1, and 1.65x / 1.68x with two single-thread workers, start-up
included; beside another busy process 2 threads run at 0.42x of one
(``benchmarks/embed_jobs.py``, ``docs/results/benchmarks/embed_jobs.md``). So ``jobs``
workers each hold a copy of the model, run one thread and embed whole files, one at a time.

* Each worker is a fresh interpreter (the ``spawn`` start method: a forked copy of a
  process whose torch thread pool has run can hang). Starting one takes about as long
  as ``voxmetric verify`` takes to start, a few seconds, so workers pay from a few hundred
  files on.
* Results come back in input order, so warnings, failures and the first error (without
  ``skip_errors``) are those of the serial loop. Library warnings raised in a worker are
  raised again in the calling process (printed there, once).
* A worker that dies (killed, out of memory) is a :class:`~voxmetric.errors.VoxmetricError`
  naming the file it was embedding. Workers ignore Ctrl-C; the calling process stops them
  (on an interrupt, an error, or when done) before it returns.
* The model travels to the workers pickled (this process's own object, never a file).
  Only CPU models: one process drives a GPU best.

A script that calls this (``jobs > 1``) must guard its top level with
``if __name__ == "__main__":``, as for any ``multiprocessing`` program with ``spawn``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ArgumentError, VoxmetricError

_STOP_WAIT_S = 2.0
"""How long finished workers get to exit before they are terminated."""


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int) -> int:
    """``jobs`` worker processes; ``0`` means one per available CPU core.

    Raises:
        ArgumentError: not a whole number >= 0.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ArgumentError(f"jobs must be a whole number >= 0 (0: one per CPU core), got {jobs!r}")
    return available_cpus() if jobs == 0 else jobs


class _Crash:
    """A worker's unexpected exception (a bug, not a bad input): its traceback as text."""

    def __init__(self, text: str):
        self.text = text


def _portable(error: VoxmetricError) -> VoxmetricError:
    """``error`` if it survives pickling (it crosses a pipe), else a plain VoxmetricError
    with its message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return VoxmetricError(str(error))


def _picklable(value) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:
        return False


def _worker(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the calling process's to handle
    try:
        import torch

        torch.set_num_threads(1)
        model = pickle.loads(conn.recv_bytes())  # noqa: S301  (pickled by the calling process a moment ago)
    except (EOFError, OSError, pickle.UnpicklingError):  # the calling process stopped while starting us
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the calling process is gone
            return
        if task is None:
            return
        index, item, sample_rate = task
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result: Any = model.embed_with_quality(item, sample_rate)
            except VoxmetricError as error:
                result = _portable(error)
            except BaseException:
                result = _Crash(traceback.format_exc())
        # a warning class the calling process could not rebuild travels as a UserWarning
        raised = [(w.category if _picklable(w.category) else UserWarning, str(w.message)) for w in caught]
        try:
            conn.send((index, result, raised))
        except OSError:  # the calling process is gone
            return
        except Exception:  # something in the result does not pickle: a bug in the model, reported as one
            with contextlib.suppress(OSError):
                conn.send((index, _Crash(traceback.format_exc()), raised))


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored in this process for the moment (a child started now inherits that; an
    interpreter keeps an inherited SIG_IGN), where this thread may change signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _name(item) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else "input array"


def embed_in_workers(model, items: Sequence, jobs: int, sample_rate: int | None = None) -> Iterator[tuple[Any, Any]]:
    """``(item, result)`` for each of ``items`` in input order, embedded by ``jobs`` worker
    processes; ``result`` is ``model.embed_with_quality(item, sample_rate)`` (an
    ``(embedding, report)`` pair) or the :class:`~voxmetric.errors.VoxmetricError` it raised.

    The workers start at the first ``next()`` and are stopped when the iterator is
    exhausted, closed or garbage-collected, or raises.

    Raises:
        ArgumentError: the model is not on the CPU, or ``jobs`` < 1.
        VoxmetricError: a worker died (killed, out of memory); the message names its file.
        RuntimeError: a worker hit an unexpected error (its traceback is the message).
    """
    import multiprocessing
    from multiprocessing.connection import wait

    device = getattr(model, "device", None)
    if device is not None and getattr(device, "type", str(device)) != "cpu":
        raise ArgumentError(f"embedding in several processes (jobs) needs a model on the CPU, not {device}: "
                            f"one process drives a GPU best")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ArgumentError(f"jobs must be a whole number >= 1, got {jobs!r}")
    items = list(items)
    if not items:
        return
    context = multiprocessing.get_context("spawn")
    payload = pickle.dumps(model)
    processes: dict[Any, Any] = {}  # connection -> its worker process
    finished = False
    try:
        for _ in range(min(jobs, len(items))):
            mine, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs,), daemon=True)
            with _sigint_ignored():  # inherited: the worker ignores Ctrl-C from its first instruction
                process.start()
            theirs.close()
            processes[mine] = process
        queue = iter(enumerate(items))
        running: dict[Any, int] = {}  # connection -> index of the item its worker is embedding
        by_sentinel = {process.sentinel: conn for conn, process in processes.items()}

        def died(conn, what: str, hint: str = "") -> VoxmetricError:
            processes[conn].join(1.0)
            code = processes[conn].exitcode
            how = (f"killed by signal {-code}: out of memory?" if code is not None and code < 0 else
                   f"exit code {code}; its own error is printed above{hint}")
            return VoxmetricError(f"{what}: the embedding worker process stopped ({how})")

        def hand_out(conn) -> None:
            task = next(queue, None)
            if task is not None:
                running[conn] = task[0]
                try:
                    conn.send((task[0], task[1], sample_rate))
                except OSError:
                    raise died(conn, _name(task[1])) from None

        # The model goes to the workers once all are started (they import torch meanwhile, side by
        # side); a worker that died starting is a broken pipe here, not a write that never ends.
        for conn in processes:
            try:
                conn.send_bytes(payload)
            except OSError:
                raise died(conn, "starting the embedding workers",
                           "; a script that starts workers needs an 'if __name__ == \"__main__\":' guard") from None
        for conn in processes:
            hand_out(conn)
        done: dict[int, Any] = {}  # index -> (result, warnings raised), kept until its turn
        next_index = 0
        while True:
            while next_index in done:
                result, raised = done.pop(next_index)
                for category, message in raised:
                    _warn_again(message, category)
                if isinstance(result, _Crash):
                    raise RuntimeError(f"embedding worker failed on {_name(items[next_index])}:\n{result.text}")
                yield items[next_index], result
                next_index += 1
            if next_index >= len(items):
                break
            for ready in wait(list(running) + [s for s, c in by_sentinel.items() if c in running]):
                conn = by_sentinel.get(ready, ready)
                if conn not in running:
                    continue
                if ready is not conn and not conn.poll():  # its worker ended while it held an item
                    raise died(conn, _name(items[running[conn]]))
                try:
                    index, result, raised = conn.recv()
                except (EOFError, OSError):
                    raise died(conn, _name(items[running[conn]])) from None
                del running[conn]
                done[index] = (result, raised)
                hand_out(conn)
        finished = True
    finally:
        _stop(processes, graceful=finished)


def _warn_again(message: str, category) -> None:
    """A worker's library warning, raised here (where the caller's filters and printing apply)."""
    try:
        warnings.warn(message, category, stacklevel=3)
    except TypeError:  # a warning class that takes more than a message
        warnings.warn(message, UserWarning, stacklevel=3)


def _stop(processes: dict, graceful: bool) -> None:
    """Stop the workers: asked to exit when all went well, terminated at once otherwise
    (an error or an interrupt must not wait for a long file to finish)."""
    for conn, process in processes.items():
        if graceful and process.is_alive():
            try:
                conn.send(None)
            except OSError:
                pass
    for conn, process in processes.items():
        if graceful:
            process.join(_STOP_WAIT_S)
        if process.is_alive():
            process.terminate()
            process.join()
        conn.close()
