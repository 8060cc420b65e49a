"""Shared fixtures: a real Kafka broker and a real PostgreSQL for the session, fresh names per test.

Broker, in this order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers container when
``ASSETHOOKS_TEST_CONTAINERS=1`` (``tests/containers.py``); otherwise ``scripts/kafka-local.sh`` (Apache
Kafka from Maven Central jars). PostgreSQL likewise: ``ASSETHOOKS_TEST_POSTGRES_URL``, a container, or
``scripts/postgres-local.sh``. When neither can be had the tests fail loudly; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from assethooks.kafka import ensure_topics
from assethooks.settings import Settings
from assethooks.store.db import make_engine
from assethooks.store.migrate import upgrade
from tests import containers
from tests.support import ROOT, Receiver

_chosen: dict[str, str] = {}


def _script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for the whole session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        _chosen["kafka"] = f"{given} (KAFKA_BOOTSTRAP_SERVERS)"
        yield given
        return
    if containers.wanted():
        with containers.kafka() as bootstrap:
            _chosen["kafka"] = f"{bootstrap} (testcontainers, {containers.KAFKA_IMAGE})"
            yield bootstrap
        return
    port = os.environ.get("ASSETHOOKS_TEST_KAFKA_PORT", "9092")
    env = {"KAFKA_PORT": port}
    was_running = _script("kafka-local.sh", "status", env=env).returncode == 0
    started = _script("kafka-local.sh", "start", env=env)
    if started.returncode != 0:
        pytest.fail(f"no Kafka broker: scripts/kafka-local.sh start failed:\n{started.stderr}", pytrace=False)
    _chosen["kafka"] = f"127.0.0.1:{port} (scripts/kafka-local.sh)"
    yield f"127.0.0.1:{port}"
    if not was_running:
        _script("kafka-local.sh", "stop", env=env)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a database on a real PostgreSQL server, used to create one database per test."""
    given = os.environ.get("ASSETHOOKS_TEST_POSTGRES_URL")
    if given:
        _chosen["postgres"] = make_url(given).render_as_string(hide_password=True)
        yield given
        return
    if containers.wanted():
        with containers.postgres() as url:
            _chosen["postgres"] = (
                f"{make_url(url).render_as_string()} (testcontainers, {containers.POSTGRES_IMAGE})"
            )
            yield url
        return
    started = _script("postgres-local.sh", "start")
    if started.returncode != 0:
        pytest.fail(
            f"no PostgreSQL: scripts/postgres-local.sh start failed:\n{started.stderr}", pytrace=False
        )
    url = _script("postgres-local.sh", "url").stdout.strip()
    _chosen["postgres"] = f"{url} (scripts/postgres-local.sh)"
    yield url


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_plain(postgres_server), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_plain(postgres_server), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class TestEnv:
    """The ``ASSETHOOKS_*`` environment of one test: fresh topics and groups, its own database."""

    __test__ = False  # not a test class

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def __getitem__(self, name: str) -> str:
        return self.values[f"ASSETHOOKS_{name.upper()}"]

    def with_(self, **changes: Any) -> TestEnv:
        """A copy with some settings changed."""
        return TestEnv(
            {**self.values, **{f"ASSETHOOKS_{key.upper()}": str(value) for key, value in changes.items()}}
        )

    def settings(self) -> Settings:
        """These settings as a ``Settings`` object."""
        return Settings.model_validate(
            {key.removeprefix("ASSETHOOKS_").lower(): value for key, value in self.values.items()}
        )


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> TestEnv:
    """Settings for one test: unique topic and group names, a SQLite store in ``tmp_path``, short retry
    delays, and loopback allowed as a delivery destination."""
    tag = uuid.uuid4().hex[:10]
    return TestEnv(
        {
            "ASSETHOOKS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "ASSETHOOKS_DATABASE_URL": f"sqlite:///{tmp_path / 'assethooks.db'}",
            "ASSETHOOKS_SOURCE_TOPIC": f"events-{tag}",
            "ASSETHOOKS_RETRY_TOPIC_PREFIX": f"retry-{tag}",
            "ASSETHOOKS_DLQ_TOPIC": f"dlq-{tag}",
            "ASSETHOOKS_DISPATCHER_GROUP": f"dispatcher-{tag}",
            "ASSETHOOKS_RETRIER_GROUP": f"retrier-{tag}",
            "ASSETHOOKS_PROJECTOR_GROUP": f"projector-{tag}",
            "ASSETHOOKS_PARTITIONS": "3",
            "ASSETHOOKS_RETRY_SCHEDULE": "1s,1s",
            "ASSETHOOKS_ALLOWED_CIDRS": "127.0.0.0/8,::1/128",
            "ASSETHOOKS_WEBHOOK_REFRESH_INTERVAL": "0.5",
            "ASSETHOOKS_SHUTDOWN_TIMEOUT": "10s",
        }
    )


@pytest.fixture
def store_env(env: TestEnv, store_url: str) -> TestEnv:
    """Settings whose database is a fresh, migrated store (SQLite or PostgreSQL)."""
    engine = make_engine(store_url)
    upgrade(engine)
    engine.dispose()
    return env.with_(database_url=store_url)


@pytest.fixture
def engine(env: TestEnv) -> Iterator[Engine]:
    """The test's migrated SQLite store, with its topics created."""
    store = make_engine(env["database_url"])
    upgrade(store)
    ensure_topics(env.settings())
    yield store
    store.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver on loopback."""
    server = Receiver().start()
    yield server
    server.stop()


def pytest_report_header() -> list[str]:
    """Say which broker and database the run uses (filled in once the fixtures ran)."""
    return ["real components: Kafka and PostgreSQL are started by the session fixtures (see the summary)"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print which real broker and database the tests ran against."""
    for name, where in sorted(_chosen.items()):
        terminalreporter.write_line(f"{name}: {where}")
