"""The benchmark scenarios. Each starts a real ``assethooks run dispatcher`` against the local broker and an
nginx sink on loopback, and reads the process's CPU time from ``/proc`` (its members' too, with
``--processes``).

- **throughput**: one webhook, a backlog of ~1 KB events, uncompressed and lz4 topics; also with one asset
  holding a tenth of the events (skewed keys), and with the delivery log in PostgreSQL when one is given;
- **fan-out**: every event to 20 webhooks;
- **isolation**: a healthy webhook beside one whose endpoint never answers, against it alone;
- **latency**: produce-to-arrival at a paced 1,000 and 5,000 events per second;
- **memory**: peak RSS draining a 1,000,000-event backlog;
- **processes**: the same backlog with one and with two processes;
- **filter**: the µs of CPU a payload filter adds per delivery (in this process: ``bench.filters``);
- **signing**: the µs of CPU each signature scheme costs per request (in this process: ``bench.signing``).

Every throughput figure sits beside the raw loop of the same run (``bench.raw``: plain aiohttp POSTs,
measured just before and just after the scenario; their mean is the reference) with the ratio, the
process's CPU share and its µs of CPU per delivery.
"""

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
from bench.filters import TYPICAL, filter_cost
from bench.load import EVENT_BYTES, fill, paced, paced_producer
from bench.signing import signing_cost
from bench.sink import BlackHole, Nginx, free_port
from schemas.tasks import SourceRef, delivery_id_for
from schemas.webhooks import validate_webhook

ASSETHOOKS = Path(sys.executable).with_name("assethooks")
POLL = 0.05
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    """One line of the results table."""

    scenario: str
    measure: str
    value: float
    unit: str
    ratio: str = ""
    cpu: str = ""
    target: str = ""


@dataclass
class Results:
    """Every figure of a run, and the machine it ran on."""

    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        """Record and print one figure."""
        self.figures.append(figure)
        print(
            f"  {figure.scenario}: {figure.measure} = {figure.value:,.1f} {figure.unit}"
            f" {figure.ratio} {figure.cpu}".rstrip(),
            flush=True,
        )

    def table(self) -> str:
        """The results as an aligned table."""
        rows = [("scenario", "measure", "value", "ratio", "CPU", "target")]
        rows += [
            (f.scenario, f.measure, f"{f.value:,.1f} {f.unit}", f.ratio, f.cpu, f.target)
            for f in self.figures
        ]
        widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
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
        total = 0.0
        for line in text.splitlines():
            if line.startswith("assethooks_deliveries_total{") and 'outcome="delivered"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def add_webhook(self, url: str, name: str = "bench") -> int:
        """Create a webhook for every event, signed; return its id."""
        return self.webhooks.create(
            validate_webhook(name=name, url=url, events=None, secret="bench-secret")
        ).id

    @contextmanager
    def dispatcher(self, processes: int = 1) -> Iterator[subprocess.Popen[bytes]]:
        """``assethooks run dispatcher`` with metrics on ``self.metrics_port``; stopped with SIGTERM."""
        command = [str(ASSETHOOKS), "run", "dispatcher", "--metrics-port", str(self.metrics_port)]
        if processes > 1:
            command += ["--processes", str(processes)]
        with (self.dir / "dispatcher.log").open("ab") as log:
            process = subprocess.Popen(command, env={**os.environ, **self.values}, stdout=log, stderr=log)
            try:
                yield process
            finally:
                process.terminate()
                process.wait(120)

    def joined(self) -> bool:
        """True once the dispatcher logged its partition assignment."""
        log = self.dir / "dispatcher.log"
        return log.exists() and "assigned" in log.read_text(errors="replace")


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants (the members of a ``--processes`` run)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _family(int(child))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of ``pid`` and its descendants so far."""
    total = 0.0
    for member in _family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def peak_rss_mb(pid: int) -> float:
    """The largest peak resident set size (VmHWM) of ``pid`` and its descendants, in MiB."""
    peak = 0.0
    for member in _family(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
    return peak


@dataclass(frozen=True)
class Run:
    """One dispatcher drain: deliveries per second from process start and steady (first to last
    delivery), CPU over the steady part, and peak memory."""

    rate: float
    steady: float
    cpu_share: float  # of one core
    cpu_us: float  # per delivery
    peak_rss_mb: float

    @property
    def cpu(self) -> str:
        """The CPU column: share of a core and µs per delivery."""
        return f"{self.cpu_share:.0%} of a core, {self.cpu_us:.0f} µs/delivery"


def drain(
    env: Environment, sink: Nginx, deliveries: int, timeout: float, *, processes: int = 1, show: bool = False
) -> Run:
    """Start a dispatcher on a filled topic and wait until ``deliveries`` reached the sink."""
    before = sink.requests()
    started = time.monotonic()
    with env.dispatcher(processes) as process:
        wait_for(sink, before + 1, timeout=timeout, process=process)
        first_at, first_count, first_cpu = time.monotonic(), sink.requests(), cpu_seconds(process.pid)
        if show:  # what `curl :PORT/metrics` shows during the run
            for share in (0.3, 0.6):
                wait_for(sink, before + int(deliveries * share), timeout=timeout, process=process)
                print(f"    metrics during the run: deliveries_total{{delivered}} = {env.delivered()}")
        _, last = wait_for(sink, before + deliveries, timeout=timeout, process=process)
        used = cpu_seconds(process.pid) - first_cpu
        rss = peak_rss_mb(process.pid)
    counted = max(before + deliveries - first_count, 1)  # a small drain can end before it is first counted
    span = max(last - first_at, 1e-6)
    return Run(deliveries / (last - started), counted / span, used / span, used / counted * 1e6, rss)


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


@dataclass(frozen=True)
class Raw:
    """A raw loop's rate and CPU per request."""

    rate: float
    cpu_us: float


def raw_loop(sink: Nginx, requests: int, concurrency: int, client: str = "aiohttp") -> Raw:
    """The raw loop's rate against the sink (``bench.raw``)."""
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.raw",
            client,
            sink.url("/raw"),
            str(requests),
            str(concurrency),
            str(EVENT_BYTES),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rate, cpu = output.stdout.split()
    return Raw(float(rate), float(cpu))


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
        producer = paced_producer(bootstrap)
        warm = paced(producer, topic, rate, WARM_UP)
        sent = paced(producer, topic, rate, seconds)
        wait_for(sink, before + len(warm) + len(sent), timeout=300, process=process)
    time.sleep(1.5)  # nginx flushes its buffered access log every second
    arrivals = sink.arrivals()
    samples = []
    for item in sent:
        delivery = delivery_id_for(SourceRef(topic, item.partition, item.offset), webhook_id)
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

    raw_requests: int = 30_000
    throughput_events: int = 60_000
    fanout_events: int = 4_000
    fanout_webhooks: int = 20
    latency_seconds: float = 20.0
    backlog_events: int = 1_000_000
    isolation_events: int = 30_000
    processes_events: int = 120_000
    filter_events: int = 20_000
    signing_events: int = 20_000


QUICK = Sizes(
    raw_requests=2_000,
    throughput_events=2_000,
    fanout_events=200,
    fanout_webhooks=5,
    latency_seconds=2.0,
    backlog_events=5_000,
    isolation_events=1_000,
    processes_events=2_000,
    filter_events=500,
    signing_events=200,
)


SCENARIOS = ("throughput", "fanout", "isolation", "latency", "memory", "processes", "filter", "signing")
IN_PROCESS = ("filter", "signing")  # scenarios that need neither the sink nor a dispatcher process


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

    def raw(self, client: str = "aiohttp") -> Raw:
        """The raw loop now."""
        return raw_loop(self.sink, self.sizes.raw_requests, self.concurrency, client)

    def against_raw(
        self,
        scenario: str,
        label: str,
        env: Environment,
        deliveries: int,
        *,
        target: str = "",
        processes: int = 1,
        show: bool = False,
    ) -> Run:
        """Drain ``env`` and compare with the raw loop measured just before and just after."""
        before = self.raw()
        run = drain(env, self.sink, deliveries, timeout=1800, processes=processes, show=show)
        after = self.raw()
        raw = (before.rate + after.rate) / 2
        add = self.results.add
        add(Figure(scenario, f"raw loop around it ({before.rate:,.0f} / {after.rate:,.0f})", raw, "req/s"))
        add(Figure(scenario, label, run.steady, "del/s", _pct(run.steady, raw), run.cpu, target))
        return run

    def throughput(self) -> None:
        """One webhook, a backlog of ~1 KB events: uncompressed and lz4, uniform and skewed keys; and with
        the delivery log in PostgreSQL if given. Also the raw loop with the project's own client."""
        count = self.sizes.throughput_events
        for compression in ("none", "lz4"):
            env = self.environment()
            env.add_webhook(self.sink.url(f"/one-{compression}"))
            fill(self.bootstrap, env.settings.source_topic, count, compression=compression)
            shown = "uncompressed" if compression == "none" else compression
            self.against_raw(
                "throughput",
                f"{count:,} {shown} events, 1 webhook",
                env,
                count,
                target="≥ 75 %, ≤ 80 µs",
                show=compression == "none",
            )
        env = self.environment()
        env.add_webhook(self.sink.url("/skewed"))
        fill(self.bootstrap, env.settings.source_topic, count, compression="none", skewed=True)
        self.against_raw("throughput", "same, one asset in ten events (skewed keys)", env, count)
        if self.postgres:
            with fresh_database(self.postgres) as url:
                env = self.environment(database_url=url)
                env.add_webhook(self.sink.url("/pg"))
                fill(self.bootstrap, env.settings.source_topic, count, compression="none")
                self.against_raw("throughput", "same, delivery log in PostgreSQL", env, count)
        own = self.raw("project")
        self.results.add(
            Figure(
                "throughput",
                "raw loop with the delivery path's HTTP client (assethooks.http, uvloop)",
                own.rate,
                "req/s",
                cpu=f"{own.cpu_us:.0f} µs/request",
            )
        )

    def fanout(self) -> None:
        """Every event to many webhooks."""
        events, webhooks = self.sizes.fanout_events, self.sizes.fanout_webhooks
        env = self.environment()
        for number in range(webhooks):
            env.add_webhook(self.sink.url(f"/fan/{number}"), name=f"fan {number}")
        fill(self.bootstrap, env.settings.source_topic, events, compression="none")
        label = f"{events:,} events x {webhooks} webhooks"
        self.against_raw("fan-out", label, env, events * webhooks, target="≥ 60 %")

    def isolation(self) -> None:
        """A healthy webhook's rate beside one whose endpoint never answers, versus alone."""
        count = self.sizes.isolation_events
        alone_env = self.environment()
        alone_env.add_webhook(self.sink.url("/alone"))
        fill(self.bootstrap, alone_env.settings.source_topic, count, compression="none")
        alone = drain(alone_env, self.sink, count, timeout=1800)
        env = self.environment()
        env.add_webhook(self.sink.url("/healthy"), name="healthy")
        env.add_webhook(self.hole.url(), name="dead")
        fill(self.bootstrap, env.settings.source_topic, count, compression="none")
        beside = drain(env, self.sink, count, timeout=1800)
        add = self.results.add
        add(Figure("isolation", "healthy webhook alone", alone.steady, "del/s", cpu=alone.cpu))
        ratio = _pct(beside.steady, alone.steady, "of alone")
        add(
            Figure(
                "isolation",
                "healthy beside a never-answering one",
                beside.steady,
                "del/s",
                ratio,
                beside.cpu,
                "≥ 90 %",
            )
        )

    def latency(self) -> None:
        """Produce-to-arrival latency at 1,000 and 5,000 events per second."""
        for rate, p99 in ((1000.0, "≤ 20 ms"), (5000.0, "≤ 50 ms")):
            env = self.environment()
            webhook = env.add_webhook(self.sink.url("/timed"))
            figures = latency(env, self.sink, webhook, rate, self.sizes.latency_seconds)
            for name in ("p50", "p99", "max"):
                target = p99 if name == "p99" else ""
                label = f"{rate:,.0f} ev/s offered, {name}"
                self.results.add(Figure("latency", label, figures[name], "ms", target=target))

    def memory(self) -> None:
        """Peak RSS draining a large backlog."""
        count = self.sizes.backlog_events
        env = self.environment()
        env.add_webhook(self.sink.url("/backlog"))
        fill(self.bootstrap, env.settings.source_topic, count, compression="none")
        run = drain(env, self.sink, count, timeout=3600)
        label = f"peak RSS draining {count:,} uncompressed events"
        self.results.add(
            Figure("memory", label, run.peak_rss_mb, "MiB", f"{run.steady:,.0f} del/s", run.cpu, "≤ 150 MB")
        )

    def processes(self) -> None:
        """The same backlog drained by one process and by two (members of one group)."""
        count = self.sizes.processes_events
        runs = []
        for processes in (1, 2):
            env = self.environment()
            env.add_webhook(self.sink.url(f"/processes-{processes}"))
            fill(self.bootstrap, env.settings.source_topic, count, compression="none")
            label = f"{count:,} events, --processes {processes}"
            runs.append(self.against_raw("processes", label, env, count, processes=processes))
        ratio = runs[1].steady / runs[0].steady if runs[0].steady else 0.0
        self.results.add(
            Figure(
                "processes",
                "two processes against one (2 cores shared with the broker and the sink)",
                ratio,
                "x",
                target="≥ 1.6x where cores are free",
            )
        )


def run_all(
    bootstrap: str, work: Path, sizes: Sizes, only: set[str] | None = None, postgres: str | None = None
) -> Results:
    """Run the scenarios (all, or ``only`` those named) and return the figures.

    The raw loop is measured right before and right after each throughput run, and the run is compared
    with their mean: this machine's speed drifts by tens of percent over minutes.
    """
    chosen = [name for name in SCENARIOS if only is None or name in only]
    results = Results()
    if any(name not in IN_PROCESS for name in chosen):
        with Nginx(work / "nginx") as sink, BlackHole() as hole:
            bench = Bench(bootstrap, work, sizes, sink, hole, postgres)
            for name in chosen:
                if name not in IN_PROCESS:
                    getattr(bench, name)()
            results = bench.results
    if "filter" in chosen:
        measure_filter(results, sizes)
    if "signing" in chosen:
        for what, cost in signing_cost(sizes.signing_events):
            events = f"{sizes.signing_events:,} ~1 KB events"
            results.add(Figure("signing", f"request built, {what}, {events}", cost, "µs/delivery"))
    return results


def measure_filter(results: Results, sizes: Sizes) -> None:
    """The filter figure: µs of CPU per delivery with the typical filter, without, and the difference."""
    without, with_filter, share = filter_cost(sizes.filter_events)
    events = f"{sizes.filter_events:,} ~1 KB events"
    results.add(Figure("filter", f"no filter, {events}", without, "µs/delivery"))
    results.add(
        Figure(
            "filter",
            f"{TYPICAL}, {events} ({share:.0%} accepted)",
            with_filter,
            "µs/delivery",
        )
    )
    results.add(
        Figure(
            "filter",
            "cost of the filter (JSON parse + evaluation)",
            with_filter - without,
            "µs/delivery",
            target="small beside ~90 µs of CPU per delivery",
        )
    )


def _pct(value: float, reference: float, of: str = "of raw") -> str:
    return f"{100 * value / reference:.0f} % {of}" if reference else ""
