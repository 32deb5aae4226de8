"""bot.collector: no garbage collection during bulk work, and start-up frozen out of collections."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

from bot import collector


def test_paused_blocks_overlap_and_the_collector_returns_after_the_last():
    entered, leave = threading.Event(), threading.Event()

    def other_run() -> None:
        with collector.paused():
            entered.set()
            leave.wait(10)

    assert gc.isenabled()
    thread = threading.Thread(target=other_run)
    with collector.paused():
        assert not gc.isenabled()
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other run is still going
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_someone_disabled_stays_disabled():
    gc.disable()
    try:
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_inside_still_brings_the_collector_back():
    try:
        with collector.paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_settling_freezes_start_up_only_in_a_settled_process():
    before = gc.get_freeze_count()
    collector.settle_again()  # this test process was never settled: nothing is frozen
    assert gc.get_freeze_count() == before
    script = ("import gc; from bot import collector; import sqlalchemy; "
              "collector.settle(); n = gc.get_freeze_count(); x = [[] for _ in range(1000)]; "
              "collector.settle_again(); print(n, gc.get_freeze_count() - n)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    frozen, more = map(int, out.split())
    assert frozen > 10_000  # the modules, classes and functions of start-up
    assert more >= 1000  # what was made after, frozen by the second call
