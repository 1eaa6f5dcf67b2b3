"""Stop a training that is waiting for data as soon as SIGTERM arrives.

Lightning answers SIGTERM by setting a flag that its loop reads between batches. A loader stuck on a
slow or broken source (a `pipe:` shard command that never finishes, a hung network mount) never gets
back to the loop, so the job ignores the signal until the scheduler kills it. `StoppableDataLoader`
turns SIGTERM during the wait for a batch into `TerminatedWhileReading`, raised from the wait itself:
Lightning then finalises the loggers and the CLI exits with status 143. No training step is in flight
and checkpoints are written atomically, so nothing is lost. If that clean-up itself hangs (closing a
`pipe:` stream waits for its command), the process exits anyway after `force_exit_seconds`, which
the training CLI sets (library users get the exception, however long the clean-up takes).
"""

import os
import signal
import sys
import threading
from contextlib import contextmanager

from torch.utils.data import DataLoader

EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
force_exit_seconds: float | None = None  # set by the training CLI


class TerminatedWhileReading(BaseException):
    """SIGTERM arrived while training waited for its next batch. A BaseException (like KeyboardInterrupt),
    so that data libraries' skip-bad-data handlers, which catch Exception, do not swallow it."""


@contextmanager
def raise_on_sigterm(what: str):
    """Inside the block, SIGTERM runs the handler installed before (e.g. Lightning's) and then raises
    TerminatedWhileReading, even out of a blocking read. Outside the block nothing changes."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous == signal.SIG_IGN:
        yield  # signal handlers belong to the main thread; an ignored SIGTERM stays ignored
        return

    def handler(signum, frame):
        if callable(previous):
            previous(signum, frame)
        message = (f"stopped: SIGTERM arrived while waiting for {what} (a slow or stuck data source?); "
                   f"checkpoints written so far are kept (resume with --ckpt_path last)")
        if force_exit_seconds is not None:
            _exit_after(force_exit_seconds)
        raise TerminatedWhileReading(message)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_after(seconds: float) -> None:
    """End the process with EXIT_STATUS after `seconds` unless it has exited by then."""
    def force_exit():
        print(f"error: the clean-up after SIGTERM did not finish within {seconds:g} s; exiting", file=sys.stderr,
              flush=True)
        os._exit(EXIT_STATUS)

    timer = threading.Timer(seconds, force_exit)
    timer.daemon = True
    timer.start()


class StoppableDataLoader(DataLoader):
    """A DataLoader whose wait for each batch ends at once on SIGTERM (see the module docstring)."""

    def __iter__(self):
        batches = super().__iter__()
        while True:
            with raise_on_sigterm("training data"):
                try:
                    batch = next(batches)
                except StopIteration:
                    return
            yield batch
