"""A throwaway PostgreSQL cluster for tests: one `initdb` in a temporary folder, served on a free
loopback port, stopped (and its folder removed) when done.

`.ci/run` starts one with `python -m tests.support.pg start DIR` and exports the printed URL as
HLCORE_TEST_PG_URL; a local `pytest` without that variable starts its own the same way (the
`pg_server` fixture in tests/conftest.py). PostgreSQL refuses to run as root, so as root the
server binaries run as the `postgres` user (created if missing). Durability is switched off:
the cluster lives for one test run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

TEST_PG_URL_ENV = "HLCORE_TEST_PG_URL"
SERVER_USER = "postgres"
_FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


def _as_server_user(argv: list[str], folder: Path) -> list[str]:
    """`argv` run as a non-root user when we are root (initdb/postgres refuse root)."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)
    shutil.chown(folder, SERVER_USER)
    return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(folder: Path) -> str:
    """Create and start a cluster in `folder` (new or empty); the admin URL (trust auth, loopback)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    data = folder / "data"
    port = _free_port()
    run = lambda argv: subprocess.run(_as_server_user(argv, folder), check=True,  # noqa: E731
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run(["initdb", "-D", str(data), "-U", SERVER_USER, "--auth=trust", "--encoding=UTF8", "--no-locale"])
        run(["pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "start",
             "-o", f"-h 127.0.0.1 -p {port} -k {folder} {_FAST}"])
    except subprocess.CalledProcessError as exc:
        log = folder / "server.log"
        detail = (exc.stderr or b"").decode(errors="replace").strip()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"could not start PostgreSQL in {folder}: {detail}\n{tail}") from exc
    return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{port}/postgres"


def stop(folder: Path) -> None:
    """Stop the cluster in `folder` (fast shutdown) and remove the folder."""
    data = folder / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(_as_server_user(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], folder),
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(folder, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """A fresh, empty database `name` on the server of `admin_url` (dropped first if it exists)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def reset_database(url: str) -> None:
    """Empty a test database: drop every table (its public schema) and advisory locks' holders."""
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def main(argv: list[str]) -> int:
    """`start DIR` prints the admin URL; `stop DIR` stops and removes it."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.support.pg start|stop DIR", file=sys.stderr)
        return 2
    folder = Path(argv[1])
    if argv[0] == "start":
        print(start(folder))
    else:
        with contextlib.suppress(OSError):
            stop(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
