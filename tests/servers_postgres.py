"""A throwaway PostgreSQL server for the tests: initdb into a temp dir, pg_ctl on a loopback port.

Use it from a test module with `pytest_plugins = ("tests.servers_postgres",)` and the
`postgres_url` fixture (session scope, a SQLAlchemy URL of an empty database).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.conftest import require_or_skip

log = structlog.get_logger(__name__)

_TOOLS = ("initdb", "pg_ctl", "postgres")
DATABASE = "canary"


def _bin_dir() -> Path | None:
    """Where initdb/pg_ctl live: $PG_BIN, Debian's versioned dirs (newest first), or PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).resolve().parent))  # Debian's /usr/bin ones are wrappers
    for c in candidates:
        if c and all((Path(c) / tool).is_file() for tool in _TOOLS):
            return Path(c)
    return None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def _try_install() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        subprocess.run(cmd, env=env, capture_output=True, timeout=600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; switch to the `postgres` account when we are root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str, log_file: Path | None = None) -> None:
    proc = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        tail = log_file.read_text()[-2000:] if log_file and log_file.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr or proc.stdout}\n{tail}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        _try_install()
        bin_dir = _bin_dir()
    require_or_skip(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bin_dir is not None
    if os.geteuid() == 0:
        require_or_skip(shutil.which("runuser") is not None, "running as root but `runuser` is missing")
        require_or_skip(_user_exists("postgres"), "running as root and there is no `postgres` user to run the server")

    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    data, log_file = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--no-sync", "--no-instructions"], "initdb")
        port = 0
        for attempt in range(3):  # the free port can be taken between probing and binding
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-w", "-t", "30",
                      "-o", opts, "start"], "pg_ctl start", log_file)
                started = True
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        _create_database(port)
        log.info("postgres started", port=port, seconds=round(time.monotonic() - began, 2), data=str(data))
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop")
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _create_database(port: int) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        conn.close()


def reset_database(url: str) -> None:
    """Empty the session's database: every table goes, the migrations' version table too."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The session's server with an empty database, for one test."""
    reset_database(postgres_url)
    return postgres_url
