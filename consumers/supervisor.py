"""``run … --processes N``: N members of the same consumer groups on one machine, under one supervisor.

One Python process delivers with one core; the consumer group spreads the partitions over its members, so
N processes use N cores with the same guarantees (each member commits only what it finished). The
supervisor starts the members (``assethooks run ROLE --member K``), restarts one that dies (after a pause
that doubles while it keeps dying, up to ``MAX_PAUSE``), passes SIGTERM/SIGINT on to all and waits for
them to drain, and serves the members' metrics as one ``/metrics`` with a ``member`` label. A member that
exits with a settings or store problem at start (exit 2 or 4) stops everything: restarting cannot help.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from assethooks import metrics

log = logging.getLogger(__name__)

MIN_PAUSE = 1.0
MAX_PAUSE = 30.0
STABLE_AFTER = 60.0  # a member that ran this long before dying is restarted at once
FATAL_EXITS = (2, 4)  # settings or store problems: the same at every start
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?( .*)$")


@dataclass
class _Member:
    number: int
    metrics_port: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    pause: float = MIN_PAUSE


class Supervisor:
    """Starts, watches, restarts and stops the members."""

    def __init__(self, role: str, count: int, arguments: Sequence[str], *, stop_timeout: float) -> None:
        self._role = role
        self._arguments = list(arguments)
        self._stop_timeout = stop_timeout
        self._members = [_Member(number, _free_port()) for number in range(count)]
        self._stopping = asyncio.Event()
        self.exit_code = 0

    async def run(self, metrics_address: tuple[str, int] | None) -> int:
        """Run the members until SIGTERM/SIGINT or a fatal exit; return the exit code for the supervisor."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        runner = None
        if metrics_address is not None:
            runner = await metrics.serve_metrics(*metrics_address, render=self._metrics)
        try:
            watchers = [asyncio.create_task(self._keep(member)) for member in self._members]
            await self._stopping.wait()
            await self._stop_all()
            await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            if runner is not None:
                await runner.cleanup()
        return self.exit_code

    async def _keep(self, member: _Member) -> None:
        while not self._stopping.is_set():
            member.started = time.monotonic()
            member.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "assethooks",
                "run",
                self._role,
                "--member",
                str(member.number),
                "--metrics-port",
                str(member.metrics_port),
                *self._arguments,
            )
            log.info("member %d started (pid %d)", member.number, member.process.pid)
            code = await member.process.wait()
            if self._stopping.is_set():
                return
            if code in FATAL_EXITS and time.monotonic() - member.started < STABLE_AFTER:
                log.error("member %d exited with %d at start: stopping every member", member.number, code)
                self.exit_code = code
                self._stopping.set()
                return
            ran = time.monotonic() - member.started
            member.pause = MIN_PAUSE if ran >= STABLE_AFTER else min(member.pause * 2, MAX_PAUSE)
            log.warning(
                "member %d exited with %d after %.0fs; restarting it in %.0fs",
                member.number,
                code,
                ran,
                member.pause,
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), member.pause)
            except TimeoutError:
                continue

    async def _stop_all(self) -> None:
        running = [m.process for m in self._members if m.process and m.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        try:
            codes = await asyncio.wait_for(
                asyncio.gather(*(process.wait() for process in running)), self._stop_timeout
            )
        except TimeoutError:
            log.error("members still running after %.0fs: killing them", self._stop_timeout)
            for process in running:
                if process.returncode is None:
                    process.kill()
            self.exit_code = self.exit_code or 1
            return
        if any(codes) and not self.exit_code:
            self.exit_code = 1

    async def _metrics(self) -> bytes:
        texts = await asyncio.gather(
            *(asyncio.to_thread(_scrape, member.metrics_port) for member in self._members)
        )
        return merge_metrics(
            [(str(member.number), text) for member, text in zip(self._members, texts, strict=True)]
        ).encode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text: str = answer.read().decode()
            return text
    except OSError:
        return ""  # restarting, or not listening yet


def merge_metrics(members: Sequence[tuple[str, str]]) -> str:
    """The Prometheus text of several members as one: every sample gains a ``member`` label; ``# HELP``
    and ``# TYPE`` lines appear once, before the samples of their metric."""
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for member, text in members:
        family = ""
        for line in text.splitlines():
            parts = line.split(" ", 3)
            if line.startswith("# ") and len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                family = parts[2]
                head = heads.setdefault(family, [])
                if len(head) < 2 and line not in head:
                    head.append(line)
                samples.setdefault(family, [])
                continue
            found = _SAMPLE.match(line)
            if found is None:
                continue
            name, labels, rest = found.groups()
            inner = f",{labels[1:-1]}" if labels and labels != "{}" else ""
            samples.setdefault(family or name, []).append(f'{name}{{member="{member}"{inner}}}{rest}')
    return "".join(
        line + "\n" for family, lines in samples.items() for line in (*heads.get(family, ()), *lines)
    )


def member_count(value: str) -> int:
    """``--processes``: a whole number from 1, or ``auto`` for the CPUs this process may run on."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError(f"--processes must be at least 1, not {value}")
    return count
