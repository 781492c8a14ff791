"""Stopping cleanly on SIGTERM (a scheduler's preemption notice) or SIGINT (Ctrl-C).

While the engine trains, `StopSignals` catches both: the handler only sets a flag; before every
train step the engine asks `poll()`, and with several processes ORs the flags of all processes
(`distributed.any_process`), so every process stops before the same step even when only one was
signalled. The engine then saves a checkpoint at that position (the epoch, the step inside it and
the partial epoch's metric sums) and raises `Preempted`; the entry points print its one line and
exit with `EXIT_PREEMPTED`. Rerunning the same command resumes there.

A process that does not reach a step within `grace_seconds` of the signal (a long compilation, the
validation or test pass) exits anyway with the same line and status, naming the position of its
last save: a watchdog thread woken by the signal (signal.set_wakeup_fd) sees to it. A second
SIGINT interrupts at once (KeyboardInterrupt).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped on request, rerun the same command to resume
PREEMPT = 1  # poll() bits
SAVE = 2     # a timed checkpoint is due (config.checkpoint_every_minutes)


def message(epoch: int, step: int) -> str:
  return f"preempted at epoch {epoch}, step {step}; rerun the same command to resume"


class Preempted(Exception):
  """Training stopped on a signal after saving its position (epoch in progress, steps done)."""

  def __init__(self, epoch: int, step: int):
    super().__init__(message(epoch, step))
    self.epoch, self.step = epoch, step


class StopSignals:
  """Catches SIGTERM and SIGINT while active (a context manager; main thread only, elsewhere it
  catches nothing)."""

  def __init__(self, grace_seconds: float = 25.0, save_every_minutes: float = 0.0):
    self.grace_seconds = grace_seconds
    self.save_every = save_every_minutes * 60.0
    self.requested: str | None = None
    self.saved = (1, 0)  # the position the last save resumes at (epoch, step)
    self.last_save = time.monotonic()
    self._old = {}
    self._pipe = None
    self._old_fd = None

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is not threading.main_thread():
      return self
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)
    r, w = os.pipe()
    os.set_blocking(w, False)
    self._pipe = (r, w)
    self._old_fd = signal.set_wakeup_fd(w)
    threading.Thread(target=self._watchdog, name="stir_jax-preemption-watchdog",
                     daemon=True).start()
    return self

  def __exit__(self, *exc) -> None:
    if not self._old:
      return
    signal.set_wakeup_fd(self._old_fd if self._old_fd is not None else -1)
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}
    os.close(self._pipe[1])  # ends the watchdog's read

  def _handle(self, signum, frame) -> None:  # pylint: disable=unused-argument
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now
    self.requested = signal.Signals(signum).name

  def _watchdog(self) -> None:
    r = self._pipe[0]
    while True:
      try:
        got = os.read(r, 64)
      except OSError:
        return
      if not got:  # closed: training ended
        os.close(r)
        return
      if signal.SIGTERM in got or signal.SIGINT in got:
        break
    time.sleep(self.grace_seconds)
    if self._old:  # still training and not stopped in time
      print(f"\n{message(*self.saved)} (stopped {self.grace_seconds:.0f} s after the signal, "
            "before reaching a step)", file=sys.stderr, flush=True)
      os._exit(EXIT_PREEMPTED)  # pylint: disable=protected-access

  def poll(self) -> int:
    """This process's bits: PREEMPT after a signal, SAVE when a timed checkpoint is due."""
    bits = PREEMPT if self.requested is not None else 0
    if self.save_every > 0 and time.monotonic() - self.last_save >= self.save_every:
      bits |= SAVE
    return bits

  def mark_saved(self, epoch: int, step: int) -> None:
    self.saved = (epoch, step)
    self.last_save = time.monotonic()
