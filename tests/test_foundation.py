"""The foundation: CLI entry point, settings, topics, schema migrations and the local broker script."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from sqlalchemy import create_engine, inspect

from assethooks import __version__
from assethooks.errors import ConfigError
from assethooks.settings import load_settings
from assethooks.store.db import database_url
from assethooks.store.models import Base
from tests.conftest import TestEnv
from tests.support import ROOT, cli, free_port, wait_until


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_version_and_help_from_the_installed_command(env: TestEnv) -> None:
    version = cli("--version", env=env.values)
    assert version.code == 0
    assert version.out.strip() == f"asset-webhooks, version {__version__}"
    usage = cli("--help", env=env.values)
    assert usage.code == 0
    for command in ("config", "db", "publish", "run", "topics", "webhooks"):
        assert re.search(rf"^\s+{command}\s", usage.out, re.MULTILINE), command


def test_config_prints_effective_settings_with_the_password_masked(env: TestEnv) -> None:
    secret_env = env.with_(database_url="postgresql://hooks:hunter2@db.example:5432/hooks", partitions="12")
    shown = cli("config", "--json", env=secret_env.values)
    assert shown.code == 0, shown.err
    values = json.loads(shown.out)
    assert values["partitions"] == "12"
    assert values["database_url"] == "postgresql://hooks:***@db.example:5432/hooks"
    assert values["retry_schedule"] == "1s,1s"
    plain = cli("config", env=secret_env.values)
    assert "hunter2" not in plain.out + plain.err
    assert re.search(r"^source_topic\s+events-", plain.out, re.MULTILINE)
    # Every duration in its short form, like the retention and timeouts.
    durations = {
        "spill_after": "1s", "retry_after_max": "1h", "breaker_cooldown": "30s",
        "breaker_max_cooldown": "10m", "auto_disable_after": "5d", "warranty_window": "30d",
        "maintenance_window": "7d",
        "alert_claim_lease": "10m", "shutdown_timeout": "10s", "webhook_refresh_interval": "500ms",
        "topic_retention": "7d",
    }  # fmt: skip
    assert {name: values[name] for name in durations} == durations
    assert re.search(r"^spill_after\s+1s$", plain.out, re.MULTILINE)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ASSETHOOKS_PARTITIONS", "many", "ASSETHOOKS_PARTITIONS: Input should be a valid integer"),
        ("ASSETHOOKS_RETRY_SCHEDULE", "5s,soon", "ASSETHOOKS_RETRY_SCHEDULE: not a duration: 'soon'"),
        ("ASSETHOOKS_DATABASE_URL", "mysql://x/y", "ASSETHOOKS_DATABASE_URL: unsupported database 'mysql'"),
        ("ASSETHOOKS_ALLOWED_CIDRS", "10.0.0.0/33", "ASSETHOOKS_ALLOWED_CIDRS:"),
    ],
)
def test_a_bad_setting_is_reported_by_its_variable_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_topics_ensure_creates_every_topic_once_with_partitions_and_retention(env: TestEnv) -> None:
    first = cli("topics", "ensure", env=env.with_(retry_schedule="1s,2m,2m").values)
    assert first.code == 0, first.err
    assert "4 created, 0 already there" in first.out
    names = [
        env["source_topic"],
        f"{env['retry_topic_prefix']}.1s",
        f"{env['retry_topic_prefix']}.2m",
        env["dlq_topic"],
    ]
    admin = AdminClient({"bootstrap.servers": env["kafka_bootstrap"]})
    topics = admin.list_topics(timeout=10).topics
    for name in names:
        assert len(topics[name].partitions) == 3, name
    configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, env["dlq_topic"])])
    (described,) = configs.values()
    assert described.result(10)["retention.ms"].value == str(30 * 86400 * 1000)

    again = cli("topics", "ensure", "--json", env=env.with_(retry_schedule="1s,2m,2m").values)
    assert again.code == 0, again.err
    assert [row["state"] for row in json.loads(again.out)] == ["exists"] * 4


def test_topics_ensure_without_a_broker_fails_fast_with_one_line(env: TestEnv) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = cli("topics", "ensure", env=env.with_(kafka_bootstrap=address).values, timeout=30)
    assert result.code == 4
    assert result.seconds < 10
    assert result.err.strip().splitlines() == [result.err.strip()]
    assert result.err.startswith(f"Error: cannot reach Kafka at {address}")
    assert "Traceback" not in result.err


def test_a_bad_database_url_gets_one_clear_line(env: TestEnv) -> None:
    malformed = cli("webhooks", "list", env=env.with_(database_url="not a url").values)
    assert malformed.code == 2
    assert (
        malformed.err.strip()
        == "Error: ASSETHOOKS_DATABASE_URL: not a database URL (e.g. sqlite:///assethooks.db, postgresql://…)"
    )

    unreachable = cli(
        "webhooks", "list", env=env.with_(database_url=f"postgresql://u:pw@127.0.0.1:{free_port()}/x").values
    )
    assert unreachable.code == 4
    line = unreachable.err.strip()
    assert line.startswith("Error: cannot use the database postgresql+psycopg://u:***@127.0.0.1:")
    assert "\n" not in line
    assert "pw@" not in line

    no_driver = cli(
        "webhooks", "list", env=env.with_(database_url="postgresql+pg8000://u@127.0.0.1/x").values
    )
    assert no_driver.code == 2  # an installation or settings problem, not an outage
    assert no_driver.err.splitlines() == [
        "Error: no driver for postgresql: install asset-webhooks[postgres] (pg8000)"
    ]


def _schema(url: str) -> dict[str, object]:
    engine = create_engine(database_url(url))
    try:
        inspector = inspect(engine)
        schema: dict[str, object] = {}
        for table in sorted(inspector.get_table_names()):
            columns = {
                column["name"]: (column["type"].python_type.__name__, column["nullable"])
                for column in inspector.get_columns(table)
            }
            indexes = sorted(
                (index["name"], tuple(index["column_names"]))
                for index in inspector.get_indexes(table)
                if not index.get("duplicates_constraint")  # PostgreSQL lists a unique constraint's index too
            )
            unique = sorted(
                (constraint["name"], tuple(constraint["column_names"]))
                for constraint in inspector.get_unique_constraints(table)
            )
            primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
            schema[table] = {"columns": columns, "indexes": indexes, "unique": unique, "primary": primary}
        with engine.connect() as connection:
            schema["differences from the models"] = compare_metadata(
                MigrationContext.configure(connection), Base.metadata
            )
        return schema
    finally:
        engine.dispose()


def test_db_upgrade_gives_the_same_schema_on_sqlite_and_postgres(
    env: TestEnv, tmp_path: Path, postgres_url: str
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for url in (sqlite_url, postgres_url):
        result = cli("db", "upgrade", env=env.with_(database_url=url).values)
        assert result.code == 0, result.err
        assert "upgraded from empty to revision" in result.out
        again = cli("db", "upgrade", env=env.with_(database_url=url).values)
        assert "is up to date" in again.out
    on_sqlite, on_postgres = _schema(sqlite_url), _schema(postgres_url)
    assert on_sqlite == on_postgres
    assert set(on_sqlite) == {
        "alembic_version",
        "alert_runs",
        "alerts",
        "asset_states",
        "dead_letters",
        "delivery_logs",
        "delivery_stats",
        "log_positions",
        "waiting_retries",
        "webhooks",
        "differences from the models",
    }
    assert on_sqlite["differences from the models"] == []


def _brokers_on(port: int) -> int:
    listing = subprocess.run(
        ["pgrep", "-f", f"kafka.Kafka .*node-{port}/"], capture_output=True, text=True, check=False
    )
    return len(listing.stdout.split())


def test_kafka_local_script_is_idempotent_and_status_tells_the_truth(tmp_path: Path) -> None:
    port = free_port()
    script = str(ROOT / "scripts" / "kafka-local.sh")
    run_env = {
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    node = ROOT / ".local" / "kafka" / f"node-{port}"

    def script_run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, command], env=run_env, capture_output=True, text=True, timeout=180, check=False
        )

    try:
        assert script_run("status").returncode == 1
        first = script_run("start")
        assert first.returncode == 0, first.stderr
        second = script_run("start")
        assert second.returncode == 0
        assert "already running" in second.stderr
        assert _brokers_on(port) == 1
        assert script_run("status").returncode == 0

        stopped = script_run("stop")
        assert stopped.returncode == 0
        wait_until(lambda: not port_open(port), timeout=10, what="the port to close")
        assert script_run("status").returncode == 1
        assert _brokers_on(port) == 0
        again = script_run("stop")
        assert again.returncode == 0
        assert "not running" in again.stderr
    finally:
        script_run("stop")
        shutil.rmtree(node, ignore_errors=True)
