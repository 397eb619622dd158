"""Task processes: own session, env and log, timeouts that kill grandchildren, figures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from planner.errors import ExecutionError
from planner.execution import Launch, TreeSampler, TreeUsage, spawn
from planner.execution.process import render_command

from .conftest import live, wait_for

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_own_session_env_and_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "s.a.1.log"
    proc = spawn(
        Launch(
            ("sh", "-c", 'echo "$PLANNER_ACCOUNT $(ps -o sid= -p $$)"; echo oops >&2; exit 3'),
            env={**ENV, "PLANNER_ACCOUNT": "acct"},
            log_path=log,
        ),
        time.monotonic,
    )
    info = proc.wait()
    assert info.exit_code == 3 and not info.timed_out
    out, err = log.read_text().splitlines()
    account, sid = out.split()
    assert account == "acct" and int(sid) == proc.pid == proc.pgid != os.getsid(0)
    assert err == "oops"


def test_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The shell and its background child both ignore SIGTERM: only the KILL ends them.
    script = f"trap '' TERM; sleep 30 & echo $! > {pids}; sleep 30"
    proc = spawn(Launch(script, env=ENV, log_path=tmp_path / "t.log", shell=True), time.monotonic)
    t0 = time.monotonic()
    wait_for(lambda: pids.exists() and bool(pids.read_text().strip()), 10, "the grandchild")
    grandchild = int(pids.read_text())
    assert live(grandchild)
    info = proc.wait(deadline=t0 + 0.3, grace=0.3)
    assert info.timed_out and info.exit_code == 128 + 9
    assert time.monotonic() - t0 < 3
    assert not live(grandchild) and not live(proc.pid)


def test_term_is_enough_when_the_tree_obeys(tmp_path: Path) -> None:
    proc = spawn(Launch(("sleep", "30"), env=ENV, log_path=tmp_path / "t.log"), time.monotonic)
    t0 = time.monotonic()
    info = proc.wait(deadline=t0 + 0.2, grace=10)
    assert info.timed_out and info.exit_code == 128 + 15
    assert time.monotonic() - t0 < 2  # did not wait the grace out


def test_cannot_start_is_an_execution_error(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with pytest.raises(ExecutionError, match="cannot start"):
        spawn(Launch(("/nonexistent/prog",), env=ENV, log_path=log), time.monotonic)
    assert "cannot start" in log.read_text()


def test_commands_are_argument_lists_unless_shell() -> None:
    values = {"account": "a b; rm -rf /", "quantity": 3}
    assert render_command(("echo", "{account}", "{quantity}"), values, shell=False) == (
        "echo", "a b; rm -rf /", "3",
    )  # fmt: skip
    assert render_command("echo {account}", values, shell=True) == "echo 'a b; rm -rf /'"


def test_peak_memory_and_cpu_of_the_tree(tmp_path: Path) -> None:
    """A grandchild that allocates 120 MB and burns CPU shows up in the figures."""
    code = (
        "import time; b = bytearray(120 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]);"
        "t = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    )
    import sys

    sampler = TreeSampler(interval=0.1)
    sampler.start()
    try:
        proc = spawn(
            Launch(("sh", "-c", f'"{sys.executable}" -c "{code}"; true'), env=ENV,
                   log_path=tmp_path / "m.log"),
            time.monotonic,
        )  # fmt: skip
        sampler.add(proc.pid)
        box = []
        info = proc.wait(before_reap=lambda: box.append(sampler.remove(proc.pid)))
    finally:
        sampler.stop()
    peak_mb, cpu_s = box[0].final(info.maxrss_kb, info.cpu_s)
    assert info.exit_code == 0
    assert peak_mb is not None and peak_mb >= 115
    assert cpu_s >= 0.55


def test_a_short_task_still_gets_cpu_from_wait4(tmp_path: Path) -> None:
    import sys

    code = "import time; t = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    sampler = TreeSampler(interval=60)  # the timer never fires
    proc = spawn(Launch((sys.executable, "-c", code), env=ENV, log_path=tmp_path / "c.log"),
                 time.monotonic)  # fmt: skip
    sampler.add(proc.pid)
    box = []
    info = proc.wait(before_reap=lambda: box.append(sampler.remove(proc.pid)))
    peak_mb, cpu_s = box[0].final(info.maxrss_kb, info.cpu_s)
    assert cpu_s >= 0.2 and peak_mb is not None and peak_mb > 0


def test_a_short_task_gets_its_real_peak(tmp_path: Path) -> None:
    """Shorter than the full-pass interval: the young-tree samples catch its peak."""
    import sys

    code = "import time; b = bytearray(80 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]);" \
        "time.sleep(0.25)"  # fmt: skip
    sampler = TreeSampler(interval=30)  # no full pass during the task
    sampler.start()
    try:
        proc = spawn(Launch((sys.executable, "-c", code), env=ENV, log_path=tmp_path / "s.log"),
                     time.monotonic)  # fmt: skip
        sampler.add(proc.pid)
        box = []
        info = proc.wait(before_reap=lambda: box.append(sampler.remove(proc.pid)))
    finally:
        sampler.stop()
    peak_mb, _ = box[0].final(0, info.cpu_s)  # without the wait4 floor
    assert peak_mb is not None and peak_mb >= 78


def test_kill_group_touches_only_a_group_of_the_named_run(tmp_path: Path) -> None:
    """A reused group id (a process of another run) is left alone; the run's own is stopped."""
    from planner.execution import kill_group

    proc = spawn(
        Launch(
            ("sleep", "30"), env={**ENV, "PLANNER_RUN_ID": "theirs"}, log_path=tmp_path / "k.log"
        ),
        time.monotonic,
    )
    deadline = time.monotonic() + 5
    while "PLANNER_RUN_ID=theirs" not in Path(f"/proc/{proc.pid}/environ").read_text(
        errors="replace"
    ):
        assert time.monotonic() < deadline, "the task never exec'd"
        time.sleep(0.01)
    assert not kill_group(proc.pgid, 0.5, time.sleep, run_id="mine")
    assert live(proc.pid)
    assert kill_group(proc.pgid, 0.5, time.sleep, run_id="theirs")
    assert proc.wait().exit_code == 128 + 15


def test_log_tail_keeps_as_much_as_the_history_stores(tmp_path: Path) -> None:
    from planner.execution.process import log_tail
    from planner.history import STDERR_TAIL_BYTES

    log = tmp_path / "big.log"
    log.write_bytes(b"x" * (3 * STDERR_TAIL_BYTES) + b"THE END")
    tail = log_tail(log)
    assert tail.endswith("THE END") and len(tail.encode()) == STDERR_TAIL_BYTES
    assert log_tail(tmp_path / "missing.log") == ""


def test_a_slow_pass_over_the_process_table_does_not_hold_up_an_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unregistering a task (just before it is reaped) does not wait for a sampling pass:
    it returns while the pass is still held inside the process table."""
    import threading

    import psutil

    from planner.execution import sampling

    real_iter = psutil.process_iter
    in_pass, go_on = threading.Event(), threading.Event()

    def held_iter(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        in_pass.set()
        assert go_on.wait(30), "the test never let the pass go on"
        yield from real_iter(*args, **kwargs)

    monkeypatch.setattr(sampling.psutil, "process_iter", held_iter)
    sampler = TreeSampler()
    sampler.add(os.getpid())
    kept = TreeUsage(peak_rss_bytes=1)
    sampler._trees[os.getpid()] = kept
    other = os.getppid()
    fresh = TreeUsage()
    sampler._trees[other] = fresh
    passing = threading.Thread(target=sampler.sample)
    passing.start()
    try:
        assert in_pass.wait(5)
        removed: list[TreeUsage] = []
        remover = threading.Thread(target=lambda: removed.append(sampler.remove(os.getpid())))
        remover.start()
        remover.join(10)
        assert removed[0] is kept and passing.is_alive()  # done while the pass is held
    finally:
        go_on.set()
        passing.join()
    assert kept.peak_rss_bytes == 1  # the pass does not write into an unregistered tree
    assert fresh.peak_rss_bytes > 0  # but updates the trees still registered
