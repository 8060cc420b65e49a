"""The sinks deliveries go to in the benchmarks: nginx answering 204 on loopback, and a black hole that
accepts connections and never answers."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  log_format arrival '$msec $http_x_asset_webhook_delivery';
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /status {{ stub_status; }}
    location /timed {{ access_log {run}/arrivals.log arrival buffer=256k flush=1s; return 204; }}
    location / {{ return 204; }}
  }}
}}
"""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Nginx:
    """nginx on loopback answering every POST with 204; ``/timed`` also logs arrival times."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._status_reads = 0

    def __enter__(self) -> Self:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "nginx.conf"
        config.write_text(NGINX_CONF.format(run=self.run_dir, port=self.port))
        self._process = subprocess.Popen([binary, "-c", str(config), "-p", str(self.run_dir)])
        deadline = time.monotonic() + 10
        while True:
            try:
                self.requests()
                return self
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"nginx did not start; see {self.run_dir}/error.log") from None
                time.sleep(0.05)

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def url(self, path: str = "/hook") -> str:
        """A URL on this sink."""
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self) -> int:
        """Requests answered so far, not counting these status reads."""
        with urllib.request.urlopen(self.url("/status"), timeout=5) as answer:
            text = answer.read().decode()
        self._status_reads += 1
        total = int(text.splitlines()[2].split()[2])
        return total - self._status_reads

    def arrivals(self) -> dict[str, float]:
        """Delivery id -> arrival time (unix seconds) of the requests to ``/timed``."""
        log = self.run_dir / "arrivals.log"
        found: dict[str, float] = {}
        if log.exists():
            for line in log.read_text().splitlines():
                moment, delivery = line.split(" ", 1)
                found.setdefault(delivery, float(moment))
        return found


class BlackHole:
    """A TCP server on loopback that accepts connections, reads requests and never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", self.port, backlog=4096)

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    def url(self, path: str = "/dead") -> str:
        """A URL that never answers."""
        return f"http://127.0.0.1:{self.port}{path}"

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        swallowing = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in swallowing:
            task.cancel()
        await asyncio.gather(*swallowing, return_exceptions=True)
