"""How a command stops on a signal: Ctrl-C (SIGINT), SIGTERM (``kill``, ``docker stop``, a scheduler's
preemption) and SIGHUP (the terminal or SSH session closed) each end it with one line that says how to go on
(``interrupted:``, exit 130; ``terminated:``, exit 143), after its cleanup (locks, temporaries) has run.

Two ways, by what a command does:
- ``termination_as_exception``: SIGTERM and SIGHUP raise at once, as Ctrl-C does. For work written atomically
  in pieces (collection shards, plan reports): whatever is finished is kept, the rest is redone on a rerun.
- ``StepBoundaryStops``: all three are noted and raised between two optimisation steps, so what a loop saves on
  its way out is a finished step (a head's training). A second Ctrl-C raises at once.
Lightning training has its own (``jepa_wm.training.stop_signals_as_termination``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from jepa_wm.errors import TrainingTerminated

TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def termination_as_exception(how: str = "rerun the same command to continue where it stopped"):
    """SIGTERM and SIGHUP raise ``TrainingTerminated`` (the ``terminated:`` line, exit 143), as Ctrl-C raises
    ``KeyboardInterrupt``, instead of ending the process without a word or a cleanup."""
    if not _in_main_thread():
        yield
        return

    def stop(signum, frame):
        raise TrainingTerminated(f"stopped by {signal.Signals(signum).name}; {how}")

    previous = {signum: signal.signal(signum, stop) for signum in TERMINATING}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class StepBoundaryStops:
    """Inside ``with``: Ctrl-C, SIGTERM and SIGHUP are noted, and ``check()`` (called after each finished step)
    raises them, as ``KeyboardInterrupt`` or ``TrainingTerminated``. ``at_boundary`` tells the code that catches
    the exception whether the state it holds is a finished step (worth saving)."""

    def __init__(self):
        self.received: list[int] = []
        self.at_boundary = False
        self._previous = {}

    def __enter__(self) -> "StepBoundaryStops":
        if _in_main_thread():
            self._previous = {signum: signal.signal(signum, self._note) for signum in (signal.SIGINT, *TERMINATING)}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum, frame) -> None:
        self.received.append(signum)
        if signum == signal.SIGINT and self.received.count(signal.SIGINT) > 1:
            raise KeyboardInterrupt  # the user insists: now, without saving this step
        if signum == signal.SIGINT:
            print("\nstopping after the current step and saving it (Ctrl-C again to stop at once)", file=sys.stderr,
                  flush=True)

    def check(self) -> None:
        """Raise the first stop signal received, if any (call it between steps)."""
        if not self.received:
            return
        self.at_boundary = True
        if self.received[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise TrainingTerminated(f"stopped by {signal.Signals(self.received[0]).name}")
