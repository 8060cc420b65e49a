"""Test helpers: waiting on conditions, a recording HTTP receiver, CLI processes and topic readers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from aiohttp import web
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

if TYPE_CHECKING:
    from tests.conftest import TestEnv

T = TypeVar("T")

POLL_INTERVAL = 0.05  # seconds between two looks at a condition

ASSETHOOKS = Path(sys.executable).with_name("assethooks")
ROOT = Path(__file__).resolve().parents[1]


def asset_event(number: int) -> bytes:
    """A small valid ``asset.updated`` event of asset ``number``."""
    return json.dumps(
        {
            "event": "asset.updated",
            "timestamp": "2026-11-28T12:00:00+00:00",
            "source": "tests",
            "asset_id": number,
            "asset": {"id": number},
            "data": {"seq": number},
        }
    ).encode()


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 30.0, what: str | Callable[[], str] = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (or what it returns, then)
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            told = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g}s waiting for {told}")
        time.sleep(POLL_INTERVAL)


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None  # what the receiver answered; None: no answer (hang, reset)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), None)


@dataclass(frozen=True)
class Redirect:
    """Answer 302 with this Location."""

    location: str


@dataclass(frozen=True)
class Answer:
    """Answer with this status, these headers and this body."""

    status: int
    headers: dict[str, str]
    body: str = "answer"


@dataclass(frozen=True)
class Capacity:
    """Take ``most`` requests at once, each answered 200 after ``latency`` seconds; refuse any request
    above that at once with 429 (no Retry-After)."""

    most: int
    latency: float


# A status; "hang" (never answer); "reset" (drop the connection); "fail-first" (500 to each delivery's
# first request, 200 later); (seconds to wait, status); a redirect; a status with headers; a capacity.
Behaviour = int | str | tuple[float, int] | Redirect | Answer | Capacity


def _status_of(behaviour: Behaviour) -> int | None:
    if isinstance(behaviour, int):
        return behaviour
    if isinstance(behaviour, tuple):
        return behaviour[1]
    if isinstance(behaviour, Redirect):
        return 302
    if isinstance(behaviour, Answer):
        return behaviour.status
    if isinstance(behaviour, Capacity):
        return 200
    return None


@dataclass
class _Route:
    plan: deque[Behaviour] = field(default_factory=deque)
    then: Behaviour = 200
    running: int = 0  # requests being answered now


class Receiver:
    """A real HTTP server on 127.0.0.1, in its own thread, that records every request.

    Each path answers 200 unless planned otherwise: ``plan("/x", 500, 500)`` answers the next two requests
    to ``/x`` with 500, then 200 (or ``then``).
    """

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.host = host
        self._tls = tls
        self._failed_once: set[str] = set()
        self._requests: list[Received] = []
        self.concurrency: list[tuple[float, int]] = []  # per request to a Capacity route: when, how many
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self._runner: web.AppRunner | None = None
        self._port = port
        self.port = 0

    def start(self) -> Receiver:
        """Start listening on a free port."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._port, ssl_context=self._tls).start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            route = self._routes.setdefault(request.path, _Route())
            behaviour = route.plan.popleft() if route.plan else route.then
            if behaviour == "fail-first":  # each delivery's first request fails, later ones succeed
                delivery = request.headers.get("X-Asset-Webhook-Delivery", "")
                behaviour = 200 if delivery in self._failed_once else 500
                self._failed_once.add(delivery)
            status = _status_of(behaviour)
            if isinstance(behaviour, Capacity):
                route.running += 1
                self.concurrency.append((time.time(), route.running))
                if route.running > behaviour.most:
                    route.running -= 1
                    status = 429
            self._requests.append(Received(request.path, dict(request.headers), body, time.time(), status))
        if behaviour == "hang":
            await asyncio.sleep(3600)
        if behaviour == "reset" and request.transport is not None:
            request.transport.abort()  # the client sees the connection reset, no answer
            return web.Response(status=500)
        if isinstance(behaviour, Redirect):
            return web.Response(status=302, headers={"Location": behaviour.location})
        if isinstance(behaviour, Answer):
            return web.Response(status=behaviour.status, headers=behaviour.headers, text=behaviour.body)
        if isinstance(behaviour, tuple):
            await asyncio.sleep(behaviour[0])
        if isinstance(behaviour, Capacity) and status == 200:
            try:
                await asyncio.sleep(behaviour.latency)
            finally:
                with self._lock:
                    route.running -= 1
        assert status is not None
        return web.Response(status=status, text=f"answer {status}")

    def delivered(self, path: str | None = None) -> list[Received]:
        """The requests answered with 2xx."""
        return [
            request for request in self.requests(path) if request.status is not None and request.status < 300
        ]

    def url(self, path: str = "/hook") -> str:
        """The URL of ``path`` on this receiver."""
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def plan(self, path: str, *behaviours: Behaviour, then: Behaviour = 200) -> None:
        """Answer the next requests to ``path`` with ``behaviours``, and later ones with ``then``."""
        with self._lock:
            self._routes[path] = _Route(deque(behaviours), then)

    def requests(self, path: str | None = None) -> list[Received]:
        """Every request so far (to ``path`` only, when given)."""
        with self._lock:
            return [request for request in self._requests if path is None or request.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` requests (to ``path``) arrived; return them all."""
        wait_until(
            lambda: len(self.requests(path)) >= count,
            timeout=timeout,
            what=lambda: f"{count} requests to {path or 'any path'} (got {len(self.requests(path))})",
        )
        return self.requests(path)

    def stop(self) -> None:
        """Stop the server and its thread (again: nothing)."""
        if self._loop.is_closed():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True)
class CliResult:
    """What a CLI process did."""

    code: int
    out: str
    err: str
    seconds: float


def cli(*args: str, env: Mapping[str, str], stdin: str | None = None, timeout: float = 60.0) -> CliResult:
    """Run ``assethooks ARGS`` as a real process with ``env`` added to this environment."""
    started = time.monotonic()
    done = subprocess.run(
        [str(ASSETHOOKS), *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


class Service:
    """``assethooks run ROLE`` as a background process whose output goes to a file."""

    def __init__(self, role: str, env: Mapping[str, str], log_path: Path, *args: str) -> None:
        self.role = role
        self._args = args
        self._env = {**os.environ, **env}
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Service:
        """Start the process."""
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(ASSETHOOKS), "run", self.role, *self._args],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """Everything the process (and earlier runs with the same log) wrote."""
        return self.log_path.read_text(errors="replace")

    def wait_assigned(self, timeout: float = 60.0) -> None:
        """Wait until the process logged a partition assignment (it joined its group)."""
        wait_until(
            lambda: "assigned" in self.output() or not self.running,
            timeout=timeout,
            what=f"{self.role} to join",
        )
        assert self.running, self.output()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(sig)
        code = self._process.wait(timeout)
        if self._log is not None:
            self._log.close()
        return code

    def kill(self) -> int:
        """SIGKILL: no chance to finish or commit anything."""
        return self.stop(signal.SIGKILL)


@contextmanager
def service(role: str, env: Mapping[str, str], log_path: Path, *args: str) -> Iterator[Service]:
    """A running ``assethooks run ROLE [ARGS]`` for the duration of the block (stopped with SIGTERM)."""
    process = Service(role, env, log_path, *args).start()
    try:
        yield process
    except BaseException:
        print(f"--- output of assethooks run {role} ---\n{process.output()}")  # shown by pytest on failure
        raise
    finally:
        if process.running:
            process.stop()


def read_topic(bootstrap: str, topic: str, *, count: int, timeout: float = 30.0) -> list[Message]:
    """Read ``topic`` from the beginning until ``count`` records arrived (fails after ``timeout``)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    records: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for record in consumer.consume(100, 0.2):
                if record.error() is None:
                    records.append(record)
    finally:
        consumer.close()
    assert len(records) >= count, f"{topic}: {len(records)} records, expected {count}"
    return records


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: the offset ``group`` committed (negative: none) and the partition's end.

    Retries while the broker answers with a retriable error (a group coordinator still loading).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, partition) for partition in metadata.partitions]

        def ask() -> list[TopicPartition] | None:
            try:
                return consumer.committed(partitions, timeout=10)
            except KafkaException as exc:
                if exc.args[0].retriable():
                    return None
                raise

        committed = wait_until(ask, timeout=30, what=f"the committed offsets of {group}")
        return {
            position.partition: (position.offset, consumer.get_watermark_offsets(position, timeout=10)[1])
            for position in committed
        }
    finally:
        consumer.close()


def committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    """True when ``group`` has committed every partition of ``topic`` up to its end.

    The consumers commit a record only after all its deliveries finished or were handed on, so this is
    the moment to assert on everything that did, or did not, happen.
    """
    offsets = committed_offsets(bootstrap, group, topic).values()
    return all(high == 0 or offset >= high for offset, high in offsets)


def records_in(env: TestEnv, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' high watermarks)."""
    consumer = Consumer({"bootstrap.servers": env["kafka_bootstrap"], "group.id": "watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            for partition in partitions
        )
    finally:
        consumer.close()
