"""Serve `hlcore dashboard` on a loopback port and look at it in Debian's headless Chromium
(Playwright drives /usr/bin/chromium; no browser is downloaded)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Poll Streamlit's `/_stcore/health` until it answers ok (or the server died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hlcore dashboard exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                                  timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"no /_stcore/health on port {port} within {timeout_s} s")


@contextlib.contextmanager
def dashboards(*arg_sets: tuple[str, ...], cwd: Path) -> Iterator[list[str]]:
    """`hlcore dashboard --port P ARGS` for each ARGS, started side by side; yields their URLs;
    each stopped by its own pid afterwards."""
    procs: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for args in arg_sets:
            port = free_port()
            procs.append((port, subprocess.Popen([sys.executable, "-m", "hlcore", "dashboard", "--port", str(port),
                                                  *args], cwd=cwd, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL, start_new_session=True)))
        for port, proc in procs:
            wait_healthy(port, proc)
        yield [f"http://127.0.0.1:{port}/" for port, _ in procs]
    finally:
        for _, proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def chromium(height: int = 1000) -> Iterator[object]:
    """A headless Chromium (Debian's) under Playwright, with a throwaway profile (`--user-data-dir`)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does it)"
    with tempfile.TemporaryDirectory(prefix="hlcore-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1400, "height": height})
        try:
            yield context
        finally:
            context.close()
