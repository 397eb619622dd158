"""pytest plugin: a private, throw-away PostgreSQL cluster for the tests that need one.

``pg_cluster`` / ``pg_url`` (session): starts a cluster with PostgreSQL's own ``initdb`` /
``pg_ctl`` in a temporary folder (as the ``postgres`` user when we are root), on a free
port of 127.0.0.1 with its unix sockets in that folder, creates a database and yields its
SQLAlchemy URL (``postgresql+psycopg://...``). The cluster is stopped and the folder
deleted at the end. ``pg_fresh_url`` (function): a new empty database in that cluster for
each test; a connection to it still open when the test ends (after a few seconds of grace)
fails the test: that is the leak check. ``pg_own_cluster`` / ``pg_own_url``: a cluster of
the test's own, which it may stop and restart.

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

__all__ = [
    "PgCluster",
    "assert_no_leftover_connections",
    "find_pg_bin",
    "leftover_connections",
    "pg_cluster",
    "pg_fresh_url",
    "pg_own_cluster",
    "pg_own_url",
    "pg_url",
]

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


class PgCluster:
    """A private PostgreSQL cluster in a temporary folder (``initdb`` + ``pg_ctl``), on a
    free port of 127.0.0.1, its unix sockets in that folder. :meth:`stop` / :meth:`start`
    / :meth:`restart` are ``pg_ctl``'s (the restart tests use them); :meth:`destroy`
    stops it for good and deletes the folder."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="planner-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.running = False
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
        self.root.chmod(0o700)
        _run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--no-sync", "--no-instructions"]
            ),
            "initdb",
        )  # fmt: skip

    @property
    def admin(self) -> str:
        """A libpq conninfo of the ``postgres`` database, as the superuser."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        _run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]), "pg_ctl")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.running = True
        _wait_ready(self.admin)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: every session is ended, as a restart does)."""
        self._ctl("-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        if self.running:
            subprocess.run(
                _as_postgres(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
                ),
                capture_output=True,
                timeout=60,
                check=False,
            )
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_bin_or_skip() -> Path:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL binaries (initdb, pg_ctl) not found")
    assert bin_dir is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user for initdb")
    return bin_dir


def _cluster() -> Iterator[PgCluster]:
    cluster = PgCluster(_pg_bin_or_skip())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's private cluster (shared by every PostgreSQL test)."""
    yield from _cluster()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PgCluster) -> str:
    """A SQLAlchemy URL of an empty database in the session's private PostgreSQL cluster."""
    return pg_cluster.create_database("planner_test")


@pytest.fixture
def pg_own_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own, which it may stop and restart (a few seconds to make)."""
    yield from _cluster()


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


#: How long a test's connections may take to go after it ended (a killed process's
#: connection is closed by its kernel; the server notices within moments).
LEAK_GRACE_S = 5.0


def leftover_connections(admin: str, database: str) -> list[tuple[object, ...]]:
    """The sessions still connected to ``database``: (pid, application_name, state, query)."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        return list(
            conn.execute(
                "SELECT pid, application_name, state, left(query, 80) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        )


def assert_no_leftover_connections(admin: str, database: str) -> None:
    """Fail when connections to ``database`` outlive the test (a store not closed, a
    process not stopped): waits :data:`LEAK_GRACE_S` for them to go first."""
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        left = leftover_connections(admin, database)
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"connections to {database} left open after the test: {left}")
        time.sleep(0.1)


def _fresh_database(cluster: PgCluster) -> Iterator[str]:
    import psycopg

    name = f"planner_t{os.getpid()}_{next(_counter)}"
    url = cluster.create_database(name)
    try:
        yield url
        if cluster.running:
            assert_no_leftover_connections(cluster.admin, name)
    finally:
        if cluster.running:
            with psycopg.connect(cluster.admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_fresh_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A new, empty database in the private cluster; dropped after the test. Connections
    to it still open at the end of the test fail it (a leak), after a short grace."""
    yield from _fresh_database(pg_cluster)


@pytest.fixture
def pg_own_url(pg_own_cluster: PgCluster) -> Iterator[str]:
    """A new, empty database in the test's own cluster (``pg_own_cluster``), leak-checked
    as :func:`pg_fresh_url`."""
    yield from _fresh_database(pg_own_cluster)
