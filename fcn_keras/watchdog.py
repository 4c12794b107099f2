"""A bound on how long a worker of a cluster waits for the others (`--worker-timeout`).

When a worker of a multi-worker run dies, TensorFlow usually fails the survivors' next
collective at once (the peer's connection is reset), and training stops with `WorkerLost`.
But a peer that hangs, a machine that freezes or a network that drops packets resets nothing:
the survivors would wait in the all-reduce forever, and no Python code runs in their main
thread to notice. So a thread watches the cluster's progress: the training loop reports each
completed step and agreement (`beat`), local work that needs no peer (the chief's validation)
is excluded (`local`), and after `timeout` seconds without progress the process prints why and
exits with status 75 (EX_TEMPFAIL: try again). It exits at once, without unwinding the stuck
thread: every file it writes is written to a temporary name and renamed, so what is on disk is
the last completed epoch, and `--resume` continues from there. The message names the chief's
`--save-dir` (only the chief writes files), since the worker that stops may be another one,
which holds none, e.g. when the chief itself was lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

EXIT_STATUS = 75   # EX_TEMPFAIL (sysexits.h): a temporary failure; the user may try again


class Watchdog:
    """Exit the process when no `beat()` came for `timeout` seconds outside `local()` work.

    `exit_fn(status)` ends the process (`os._exit`, which no stuck thread can block); tests
    pass their own."""

    def __init__(self, timeout: float, what: str = "the other worker(s)", exit_fn=os._exit):
        self.timeout = float(timeout)
        self.what = what
        self.exit_fn = exit_fn
        self.fired = False
        self._last = time.monotonic()
        self._local = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fcn-worker-watchdog",
                                        daemon=True)

    def start(self) -> "Watchdog":
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def beat(self) -> None:
        """The cluster made progress (a step, an agreement, the cluster formed)."""
        self._last = time.monotonic()

    @contextlib.contextmanager
    def local(self):
        """Work of this process alone (validation): no progress is expected from the others."""
        self._local += 1
        try:
            yield
        finally:
            self._local -= 1
            self.beat()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            if not self._local and time.monotonic() - self._last > self.timeout:
                self._expire()
                return

    def _expire(self) -> None:
        self.fired = True
        print(f"error: no progress from {self.what} for {self.timeout:g} s (--worker-timeout): "
              "a worker was lost or hangs; stopping this one. The chief's --save-dir holds "
              "the last completed epoch: restart every worker with --resume", file=sys.stderr,
              flush=True)
        self.exit_fn(EXIT_STATUS)
