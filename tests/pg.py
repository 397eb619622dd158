"""pytest plugin: a private, throw-away PostgreSQL cluster for the tests that need one.

``pg_url`` (session): starts a cluster with PostgreSQL's own ``initdb`` / ``pg_ctl`` in a
temporary folder (as the ``postgres`` user when we are root), on a free port of 127.0.0.1
with its unix sockets in that folder, creates a database and yields its SQLAlchemy URL
(``postgresql+psycopg://...``). The cluster is stopped and the folder deleted at the end.
``pg_fresh_url`` (function): a new empty database in that cluster for each test.

When the binaries are absent the tests skip, saying why; with ``CI=true`` they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["find_pg_bin", "pg_fresh_url", "pg_url"]

_IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_counter = itertools.count(1)


def find_pg_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (PostgreSQL 15 preferred), if installed."""
    override = os.environ.get("PLANNER_PG_BIN")
    candidates = [override] if override else []
    candidates += ["/usr/lib/postgresql/15/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _unavailable(reason: str) -> None:
    if _IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL of an empty database in a private PostgreSQL cluster."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL binaries (initdb, pg_ctl) not found")
    assert bin_dir is not None
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user for initdb")
    root = Path(tempfile.mkdtemp(prefix="planner-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    root.chmod(0o700)
    port = _free_port()
    started = False
    try:
        _run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--no-sync", "--no-instructions"]
            ),
            "initdb",
        )  # fmt: skip
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        _run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                 "-l", str(root / "server.log"), "-w", "-t", "60", "start"]
            ),
            "pg_ctl start",
        )  # fmt: skip
        started = True
        admin = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        _wait_ready(admin)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE planner_test")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/planner_test"
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(conninfo: str) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(conninfo, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def pg_fresh_url(pg_url: str) -> Iterator[str]:
    """A new, empty database in the private cluster; dropped after the test."""
    import psycopg
    from sqlalchemy import make_url

    url = make_url(pg_url)
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    name = f"planner_t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
