"""Python's cyclic garbage collector, kept out of the way of bulk work.

A whole-book run makes hundreds of thousands of short-lived tuples (rows read, rows to store). Every
few hundred allocations start a young collection, the survivors are promoted, and now and then a full
collection walks every object the process holds: about 120,000 once SQLAlchemy, NumPy and the Slack
SDK are loaded, nearly all of them modules, classes and functions that live as long as the process.
Scoring 10k accounts made one or two full collections of 60-150 ms each (holding the GIL, so every
thread stopped), 15-45 % of the run on either engine.

- `settle()`, once a process has started (the `keepwell` command, a scoring worker; `settle_again`
  once `serve` or `run` has loaded the Slack app): freeze what is alive, so that later full
  collections walk only what the process made since. This is `gc.freeze`'s documented
  use; what it freezes is never freed, so never call it in a process that has transient objects to
  lose (a test run calling the CLI again and again).
- `paused()`: no collection while a bulk run allocates. What cycles such a run leaves (about 500
  objects for 10k accounts, from the database layer) are collected afterwards, as usual.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0  # runs in progress that asked for no collection (threads may overlap)
_resume = False  # whether the collector was enabled when the first of them began


_settled = False  # this process's start-up was settled (it is a command's or a worker's own process)


def settle() -> None:
    """Exclude everything alive now from future collections. No collection first: after the
    command's imports it found 20 unreachable objects and took 64 ms, a sixteenth of start-up."""
    global _settled
    gc.freeze()
    _settled = True


def settle_again() -> None:
    """`settle` once more, where a settled process has finished more start-up (a long-running command
    loading the Slack app); nothing where it was never settled (a test calling the command in)."""
    if _settled:
        settle()


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic garbage collection in the process until every overlapping `paused` block has left;
    then the collector is as it was before the first (a collector someone disabled stays disabled)."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()
