"""``assethooks run dispatcher|retrier|projector|all|alerts``: the long-running processes, and the alerts
cron producer.

SIGTERM or SIGINT stops fetching, finishes (or leaves uncommitted) the work in flight, commits and exits 0;
`run alerts --every` finishes the run under way and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading

import click

from assethooks.cli.base import App, Command, pass_app
from assethooks.cli.output import counted, say
from assethooks.clock import utc_now
from assethooks.durations import parse_duration, parse_time
from assethooks.errors import ConfigError, InvalidInputError
from assethooks.logging_setup import configure_logging
from assethooks.loops import event_loop_factory
from consumers.service import ROLES, serve
from consumers.supervisor import Supervisor, member_count
from producers.alerts import produce_alerts


@click.command("run", cls=Command)
@click.argument("role", type=click.Choice([*ROLES, "all", "alerts"]))
@click.option("--log-level", default=None, help="Log level (default: ASSETHOOKS_LOG_LEVEL or INFO).")
@click.option("--json-logs", is_flag=True, help="Write logs as JSON lines.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar="ASSETHOOKS_METRICS_PORT",
    help="Serve Prometheus /metrics here.",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address of the metrics endpoint."
)
@click.option(
    "--processes",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Members of the consumer groups to run on this machine, under one supervisor (auto: one per CPU).",
)
@click.option("--member", type=int, hidden=True, help="Set by the supervisor: this member's number.")
@click.option("--once", is_flag=True, help="alerts: one run, then exit (for cron or a CronJob).")
@click.option("--every", help="alerts: run in a loop, e.g. 1h.")
@click.option("--now", "at", help="alerts with --once: the time to compute alerts for (ISO 8601).")
@pass_app
def run(
    app: App,
    role: str,
    log_level: str | None,
    json_logs: bool,
    metrics_port: int | None,
    metrics_host: str,
    processes: str,
    member: int | None,
    once: bool,
    every: str | None,
    at: str | None,
) -> None:
    """Run the dispatcher, the retrier, the projector, all three in one process (small installs), or the
    alerts producer (`run alerts --once` or `--every 1h`). With --processes N, N members of the same
    groups run under one supervisor: one Python process uses one core."""
    settings = app.settings
    configure_logging(log_level or settings.log_level, json_lines=json_logs, batched=role != "alerts")
    if role == "alerts":
        _alerts(app, once, every, at)
        return
    if once or every or at:
        raise InvalidInputError("--once, --every and --now are for `run alerts`")
    try:
        count = member_count(processes)
    except ValueError:
        raise InvalidInputError(
            f"--processes takes a whole number from 1 or auto, not {processes!r}"
        ) from None
    roles = ROLES if role == "all" else (role,)
    address = None if metrics_port is None else (metrics_host, metrics_port)
    if count > 1:
        passed = ["--json-logs"] if json_logs else []
        if log_level:
            passed += ["--log-level", log_level]
        supervisor = Supervisor(role, count, passed, stop_timeout=settings.shutdown_timeout + 30)
        with asyncio.Runner() as runner:
            code = runner.run(supervisor.run(address))
        click.get_current_context().exit(code)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, roles, stop, metrics_address=address, member=member)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main())


def _alerts(app: App, once: bool, every: str | None, at: str | None) -> None:
    if once == (every is not None):
        raise InvalidInputError("run alerts needs either --once or --every DURATION")
    if at is not None and not once:
        raise InvalidInputError("--now goes with --once")
    pause = None if every is None else parse_duration(every)
    if pause == 0:
        raise InvalidInputError("--every must be longer than 0s")
    try:
        given = None if at is None else parse_time(at)
    except ConfigError as exc:
        raise ConfigError(f"--now: {exc}") from None
    stopping = threading.Event()
    if pause is not None:  # as a container's first process, nothing else would end the loop on SIGTERM
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
    while True:
        now = given or utc_now()
        report = produce_alerts(app.settings, app.migrated_engine, now)
        for key, reason in report.failed:
            say(f"alert {key} not sent: {reason}", err=True)
        click.echo(
            f"{counted(report.due, 'alert')} due at {now.isoformat(timespec='seconds')}: "
            f"{len(report.sent)} sent, {report.already} already sent, {len(report.failed)} failed"
        )
        if pause is None:
            if report.failed:
                click.get_current_context().exit(1)
            return
        if stopping.wait(pause):  # a cron loop: the next run is not due before
            return


COMMANDS = [run]
