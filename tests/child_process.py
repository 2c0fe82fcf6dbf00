"""Child processes the tests start: free ports, waiting until one is ready, stopping it,
and a redis-server the tests own (killed, frozen and restarted)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

__all__ = ["RedisServer", "free_port", "stop", "wait_until"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    ready: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 60.0,
) -> None:
    """Poll ``ready``; fail with ``log`` if ``process`` exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{log.read_text()}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (SIGTERM), then SIGKILL if the process has not exited within 15 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """One redis-server process; ``restart`` brings it back on the same port.

    By default it never persists (``--save "" --appendonly no``), so a restart is an empty
    Redis, exactly what a crashed cache-only Redis comes back as. ``persistent=True``
    keeps an append-only file in ``workdir``, as ``make up``'s Redis does.
    """

    port: int
    workdir: Path
    persistent: bool = False
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        appendonly = "yes" if self.persistent else "no"
        args += ["--save", "", "--appendonly", appendonly, "--dir", str(self.workdir)]
        args += ["--logfile", str(self.workdir / "redis.log")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited {self.process.returncode}:\n{log}")
            if self.ping():
                return self
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, connections reset."""
        if self.process is not None:
            if self.paused:
                self.resume()
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: the hung server carries on with whatever it had received."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def client(self) -> redis.Redis:
        """A plain client, for checking what the server holds."""
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()
