"""A fork server for the crash campaign's many lives of `hlcore live`.

Each life of `random_kills` used to be a new interpreter: about 1 s of imports and 1 s of policy
shape validation (cerberus) before the process took its writer lock, i.e. most of a life and most
of the campaign, none of it what the campaign tests (nothing is written before the lock). The
server is one interpreter that imports the CLI and loads the rig's policy once, then forks a child
per life; the child sets its argv, working directory, environment and stdio and runs the same
console entry (`hlcore_cli.main`) as `python -m hlcore`. A child is a real process with its own
pid and files, SIGKILLed exactly as before; only the work before `main` is shared.

The server is single-threaded (forking a process with threads could copy a held lock), reaps its
children itself and reports their exit codes; `Life` is the `subprocess.Popen` subset the rig uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVER = r'''
import json, os, select, sys
from pathlib import Path

from hlcore.config.settings import load_settings
from hlcore.policy.loader import load_policy
import hlcore.app, hlcore.jobs.copytrade.service, hlcore.ops.baseline  # what `live` imports lazily
import hlcore_cli

warm = json.loads(sys.argv[1])
load_policy(Path(warm["policy"]), load_settings(Path(warm["config"])))  # fills the process's policy caches
requests, replies = sys.stdin.buffer, sys.stdout.buffer
codes = {}
buffer = b""


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        codes[pid] = os.waitstatus_to_exitcode(status)


def child(req):
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.argv = ["hlcore", *req["argv"]]
    code = 0
    try:
        hlcore_cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    import atexit
    atexit._run_exitfuncs()  # what the interpreter's exit does (logging.shutdown flushes the logs)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


replies.write(b"ready\n")
replies.flush()
while True:
    select.select([requests], [], [], 0.05)
    reap()
    chunk = os.read(requests.fileno(), 65536) if select.select([requests], [], [], 0)[0] else None
    if chunk == b"":
        break
    if chunk:
        buffer += chunk
    while b"\n" in buffer:
        line, buffer = buffer.split(b"\n", 1)
        req = json.loads(line)
        if req["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                child(req)
            answer = {"pid": pid}
        else:
            reap()
            answer = {"code": codes.get(req["pid"])}
        replies.write(json.dumps(answer).encode() + b"\n")
        replies.flush()
'''


class ForkServer:
    """One warm interpreter per rig (its policy and config), forking a child per `spawn`."""

    def __init__(self, root: Path, config: Path, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps({"policy": str(root),
                                                                               "config": str(config)})],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root)
        if self._read() != b"ready":
            raise RuntimeError("the fork server did not start")

    def _read(self) -> bytes:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self.proc.poll()})")
        return line.strip()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._read())
        return answer

    def spawn(self, argv: list[str], cwd: Path, env: dict[str, str], stderr: Path) -> Life:
        pid = int(self._ask({"op": "spawn", "argv": argv, "cwd": str(cwd), "env": env, "stderr": str(stderr)})["pid"])
        return Life(self, pid)

    def exit_code(self, pid: int) -> int | None:
        code = self._ask({"op": "poll", "pid": pid})["code"]
        return None if code is None else int(code)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Life:
    """A forked `hlcore live`: the part of `subprocess.Popen` the rig uses (the server reaps it)."""

    def __init__(self, server: ForkServer, pid: int):
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"hlcore live (pid {self.pid})", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
