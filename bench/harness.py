"""The benchmark scenarios: raw limit, throughput (one webhook and fan-out), latency at a paced rate,
memory on a large backlog, and isolation from a dead endpoint. Each starts a real ``assethooks run
dispatcher`` process against the local broker and an nginx sink on loopback."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from assethooks.kafka import ensure_topics
from assethooks.settings import Settings
from assethooks.store.db import make_engine
from assethooks.store.migrate import upgrade
from assethooks.store.webhooks import WebhookStore
from bench.load import EVENT_BYTES, fill, paced
from bench.sink import BlackHole, Nginx, free_port
from schemas.tasks import SourceRef, delivery_id_for
from schemas.webhooks import validate_webhook

ASSETHOOKS = Path(sys.executable).with_name("assethooks")
POLL = 0.05


@dataclass
class Figure:
    """One line of the results table."""

    scenario: str
    measure: str
    value: float
    unit: str
    ratio: str = ""
    target: str = ""


@dataclass
class Results:
    """Every figure of a run, and the machine it ran on."""

    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        """Record and print one figure."""
        self.figures.append(figure)
        print(
            f"  {figure.scenario}: {figure.measure} = {figure.value:,.1f} {figure.unit} {figure.ratio}",
            flush=True,
        )

    def table(self) -> str:
        """The results as an aligned table."""
        rows = [("scenario", "measure", "value", "ratio", "target")]
        rows += [(f.scenario, f.measure, f"{f.value:,.1f} {f.unit}", f.ratio, f.target) for f in self.figures]
        widths = [max(len(row[index]) for row in rows) for index in range(5)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
        )


def machine() -> str:
    """A one-line description of this machine."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores {model}, {memory} GiB, Python {platform.python_version()}"


class Environment:
    """A fresh set of topics, groups and a SQLite store for one scenario."""

    def __init__(self, bootstrap: str, work: Path, **settings: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.dir = work / tag
        self.dir.mkdir(parents=True)
        self.values = {
            "ASSETHOOKS_KAFKA_BOOTSTRAP": bootstrap,
            "ASSETHOOKS_DATABASE_URL": f"sqlite:///{self.dir / 'store.db'}",
            "ASSETHOOKS_SOURCE_TOPIC": f"bench-events-{tag}",
            "ASSETHOOKS_RETRY_TOPIC_PREFIX": f"bench-retry-{tag}",
            "ASSETHOOKS_DLQ_TOPIC": f"bench-dlq-{tag}",
            "ASSETHOOKS_DISPATCHER_GROUP": f"bench-dispatcher-{tag}",
            "ASSETHOOKS_RETRIER_GROUP": f"bench-retrier-{tag}",
            "ASSETHOOKS_ALLOWED_CIDRS": "127.0.0.0/8",
            **{f"ASSETHOOKS_{name.upper()}": value for name, value in settings.items()},
        }
        self.settings = Settings.model_validate(
            {key.removeprefix("ASSETHOOKS_").lower(): value for key, value in self.values.items()}
        )
        engine = make_engine(self.settings.database_url.get_secret_value())
        upgrade(engine)
        self.webhooks = WebhookStore(engine)
        ensure_topics(self.settings)
        self.metrics_port = free_port()

    def delivered(self) -> float | None:
        """The dispatcher's ``assethooks_deliveries_total{outcome="delivered"}``, when it answers."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith('assethooks_deliveries_total{outcome="delivered"}'):
                return float(line.rsplit(" ", 1)[1])
        return None

    def add_webhook(self, url: str, name: str = "bench") -> int:
        """Create a webhook for every event, signed; return its id."""
        return self.webhooks.create(
            validate_webhook(name=name, url=url, events=None, secret="bench-secret")
        ).id

    @contextmanager
    def dispatcher(self) -> Iterator[subprocess.Popen[bytes]]:
        """``assethooks run dispatcher`` with metrics on ``self.metrics_port``; stopped with SIGTERM."""
        with (self.dir / "dispatcher.log").open("ab") as log:
            process = subprocess.Popen(
                [str(ASSETHOOKS), "run", "dispatcher", "--metrics-port", str(self.metrics_port)],
                env={**os.environ, **self.values},
                stdout=log,
                stderr=log,
            )
            try:
                yield process
            finally:
                process.terminate()
                process.wait(120)

    def joined(self) -> bool:
        """True once the dispatcher logged its partition assignment."""
        log = self.dir / "dispatcher.log"
        return log.exists() and "assigned" in log.read_text(errors="replace")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(
    sink: Nginx, target: int, *, timeout: float, process: subprocess.Popen[bytes]
) -> tuple[float, float]:
    """Wait until the sink answered ``target`` requests in all; return when the first request after the
    call and the last one arrived."""
    first = last = 0.0
    before = sink.requests()
    deadline = time.monotonic() + timeout
    while True:
        count = sink.requests()
        now = time.monotonic()
        if count > before and not first:
            first = now
        if count >= target:
            last = now
            return first, last
        if now > deadline or process.poll() is not None:
            raise RuntimeError(
                f"only {count} of {target} deliveries arrived (dispatcher exit {process.poll()})"
            )
        time.sleep(POLL)


def raw_limit(sink: Nginx, requests: int, concurrency: int) -> float:
    """Requests per second of a plain aiohttp loop against the sink."""
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.raw",
            sink.url("/raw"),
            str(requests),
            str(concurrency),
            str(EVENT_BYTES),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(output.stdout.strip())


@dataclass(frozen=True)
class Run:
    """One dispatcher drain: deliveries per second from process start, and steady (first to last)."""

    rate: float
    steady: float
    peak_rss_mb: float


def drain(
    env: Environment, sink: Nginx, deliveries: int, timeout: float, *, show_metrics: bool = False
) -> Run:
    """Start a dispatcher on a filled topic and wait until ``deliveries`` reached the sink."""
    before = sink.requests()
    started = time.monotonic()
    with env.dispatcher() as process:
        first, _ = wait_for(sink, before + 1, timeout=timeout, process=process)
        if show_metrics:  # what `curl :PORT/metrics` shows during the run
            for share in (0.3, 0.6):
                wait_for(sink, before + int(deliveries * share), timeout=timeout, process=process)
                print(
                    f"    metrics during the run: deliveries_total{{delivered}} = {env.delivered()}",
                    flush=True,
                )
        _, last = wait_for(sink, before + deliveries, timeout=timeout, process=process)
        rss = peak_rss_mb(process.pid)
    return Run(deliveries / (last - started), deliveries / max(last - first, 1e-6), rss)


WARM_UP = 3.0  # seconds of traffic before measuring: a new topic's first fetches wait out a backoff


def latency(env: Environment, sink: Nginx, webhook_id: int, rate: float, seconds: float) -> dict[str, float]:
    """Latency from an event's produce time to its arrival at the sink, at a paced offered rate (after a
    warm-up at the same rate, whose events are not counted)."""
    bootstrap, topic = env.values["ASSETHOOKS_KAFKA_BOOTSTRAP"], env.settings.source_topic
    with env.dispatcher() as process:
        deadline = time.monotonic() + 60
        while not env.joined():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("dispatcher did not join its group")
            time.sleep(POLL)
        before = sink.requests()
        warm = paced(bootstrap, topic, rate, WARM_UP)
        sent = paced(bootstrap, topic, rate, seconds)
        wait_for(sink, before + len(warm) + len(sent), timeout=300, process=process)
    time.sleep(1.5)  # nginx flushes its buffered access log every second
    arrivals = sink.arrivals()
    samples = []
    for item in sent:
        delivery = delivery_id_for(
            SourceRef(topic=topic, partition=item.partition, offset=item.offset), webhook_id
        )
        if delivery in arrivals:
            samples.append((arrivals[delivery] - item.created) * 1000)
    if len(samples) < len(sent) * 0.99:
        raise RuntimeError(f"only {len(samples)} of {len(sent)} latency samples matched")
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99) - 1],
        "max": samples[-1],
        "count": float(len(samples)),
    }


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (``quick`` shrinks them for the smoke test)."""

    raw_requests: int = 20_000
    throughput_events: int = 100_000
    fanout_events: int = 10_000
    fanout_webhooks: int = 20
    latency_seconds: float = 20.0
    backlog_events: int = 1_000_000
    isolation_events: int = 20_000


QUICK = Sizes(
    raw_requests=2_000,
    throughput_events=2_000,
    fanout_events=200,
    fanout_webhooks=5,
    latency_seconds=2.0,
    backlog_events=5_000,
    isolation_events=1_000,
)


SCENARIOS = ("throughput", "fanout", "latency", "memory", "isolation")


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``, dropped afterwards."""
    admin = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Bench:
    """The scenarios, against one nginx sink and one black hole."""

    def __init__(
        self, bootstrap: str, work: Path, sizes: Sizes, sink: Nginx, hole: BlackHole, postgres: str | None
    ) -> None:
        self.bootstrap, self.work, self.sizes = bootstrap, work, sizes
        self.sink, self.hole, self.postgres = sink, hole, postgres
        self.results = Results()
        self.concurrency = Settings().max_in_flight_per_webhook

    def environment(self, **settings: str) -> Environment:
        """Fresh topics, groups and store."""
        return Environment(self.bootstrap, self.work, **settings)

    def raw(self) -> float:
        """The raw limit now."""
        return raw_limit(self.sink, self.sizes.raw_requests, self.concurrency)

    def against_raw(
        self, scenario: str, label: str, env: Environment, deliveries: int, *, show: bool = False
    ) -> None:
        """Drain ``env`` and compare with the raw limit measured just before and just after."""
        before = self.raw()
        run = drain(env, self.sink, deliveries, timeout=1800, show_metrics=show)
        after = self.raw()
        raw = (before + after) / 2
        add = self.results.add
        add(Figure(scenario, f"raw limit around it ({before:,.0f} / {after:,.0f})", raw, "req/s"))
        add(Figure(scenario, f"{label}, from start", run.rate, "del/s", _pct(run.rate, raw), "≥ 60 %"))
        add(Figure(scenario, f"{label}, steady", run.steady, "del/s", _pct(run.steady, raw)))

    def throughput(self) -> None:
        """One webhook, a backlog of ~1 KB events; again with the delivery log in PostgreSQL if given."""
        count = self.sizes.throughput_events
        env = self.environment()
        env.add_webhook(self.sink.url("/one"))
        fill(self.bootstrap, env.settings.source_topic, count)
        self.against_raw("throughput", f"{count:,} events, 1 webhook", env, count, show=True)
        if self.postgres:
            with fresh_database(self.postgres) as url:
                env = self.environment(database_url=url)
                env.add_webhook(self.sink.url("/pg"))
                fill(self.bootstrap, env.settings.source_topic, count)
                self.against_raw("throughput", "same, delivery log in PostgreSQL", env, count)

    def fanout(self) -> None:
        """Every event to many webhooks."""
        events, webhooks = self.sizes.fanout_events, self.sizes.fanout_webhooks
        env = self.environment()
        for number in range(webhooks):
            env.add_webhook(self.sink.url(f"/fan/{number}"), name=f"fan {number}")
        fill(self.bootstrap, env.settings.source_topic, events)
        self.against_raw("fan-out", f"{events:,} events x {webhooks} webhooks", env, events * webhooks)

    def latency(self) -> None:
        """Produce-to-arrival latency at 500 and 2,000 events per second."""
        for rate in (500.0, 2000.0):
            env = self.environment()
            webhook = env.add_webhook(self.sink.url("/timed"))
            figures = latency(env, self.sink, webhook, rate, self.sizes.latency_seconds)
            target = {"p50": "≤ 10 ms", "p99": "≤ 50 ms"} if rate == 500 else {}
            for name in ("p50", "p99", "max"):
                label = f"{rate:.0f} ev/s {name}"
                self.results.add(Figure("latency", label, figures[name], "ms", "", target.get(name, "")))

    def memory(self) -> None:
        """Peak RSS draining a large backlog."""
        count = self.sizes.backlog_events
        env = self.environment()
        env.add_webhook(self.sink.url("/backlog"))
        fill(self.bootstrap, env.settings.source_topic, count)
        run = drain(env, self.sink, count, timeout=3600)
        label = f"peak RSS draining {count:,} events"
        self.results.add(
            Figure("memory", label, run.peak_rss_mb, "MiB", f"{run.rate:,.0f} del/s", "≤ 250 MB")
        )

    def isolation(self) -> None:
        """A healthy webhook's rate beside one whose endpoint never answers, versus alone."""
        count = self.sizes.isolation_events
        alone_env = self.environment()
        alone_env.add_webhook(self.sink.url("/alone"))
        fill(self.bootstrap, alone_env.settings.source_topic, count)
        alone = drain(alone_env, self.sink, count, timeout=1800)
        env = self.environment()
        env.add_webhook(self.sink.url("/healthy"), name="healthy")
        env.add_webhook(self.hole.url(), name="dead")
        fill(self.bootstrap, env.settings.source_topic, count)
        beside = drain(env, self.sink, count, timeout=1800)
        self.results.add(Figure("isolation", "healthy webhook alone", alone.steady, "del/s"))
        ratio = _pct(beside.steady, alone.steady, "of alone")
        self.results.add(
            Figure("isolation", "healthy beside a dead endpoint", beside.steady, "del/s", ratio, "≥ 80 %")
        )


def run_all(
    bootstrap: str, work: Path, sizes: Sizes, only: set[str] | None = None, postgres: str | None = None
) -> Results:
    """Run the scenarios (all, or ``only`` those named) and return the figures.

    The raw limit is measured right before and right after each throughput run, and the run is compared
    with their mean: this machine's speed drifts by tens of percent over minutes.
    """
    with Nginx(work / "nginx") as sink, BlackHole() as hole:
        bench = Bench(bootstrap, work, sizes, sink, hole, postgres)
        for name in SCENARIOS:
            if only is None or name in only:
                getattr(bench, name)()
    return bench.results


def _pct(value: float, reference: float, of: str = "of raw") -> str:
    return f"{100 * value / reference:.0f} % {of}" if reference else ""
