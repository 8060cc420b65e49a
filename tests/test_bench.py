"""A smoke test of the benchmark harness: every scenario runs at tiny sizes and prints its figures.

The figures of such a run mean nothing; `make bench` measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TestEnv
from tests.support import ROOT


@pytest.mark.timeout(900)
def test_the_harness_runs_every_scenario_and_prints_the_table(env: TestEnv, postgres_server: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": env["kafka_bootstrap"],
            "ASSETHOOKS_BENCH_POSTGRES_URL": postgres_server,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = Path(done.stdout.strip().splitlines()[-1].removeprefix("saved: "))
    figures = json.loads(saved.read_text())["figures"]
    measures = [(figure["scenario"], figure["measure"]) for figure in figures]
    for scenario, start in [
        ("throughput", "2,000 uncompressed events, 1 webhook"),
        ("throughput", "2,000 lz4 events, 1 webhook"),
        ("throughput", "same, one asset in ten events"),
        ("throughput", "same, delivery log in PostgreSQL"),
        ("throughput", "raw loop with the delivery path's HTTP client"),
        ("fan-out", "200 events x 5 webhooks"),
        ("isolation", "healthy beside a never-answering one"),
        ("latency", "1,000 ev/s offered, p99"),
        ("latency", "5,000 ev/s offered, p50"),
        ("memory", "peak RSS draining 5,000"),
        ("processes", "2,000 events, --processes 2"),
        ("processes", "two processes against one"),
        ("filter", "cost of the filter (JSON parse + evaluation)"),
        ("signing", "request built, standard-ed25519, during a rotation"),
    ]:
        assert any(found == scenario and measure.startswith(start) for found, measure in measures), (
            start,
            measures,
        )
    # Rates and sizes are positive; a latency may honestly be 0 below the sink log's millisecond resolution.
    assert all(figure["value"] > 0 for figure in figures if figure["unit"] != "ms"), figures
    assert all(figure["value"] >= 0 for figure in figures if figure["unit"] == "ms"), figures
    assert "deliveries_total{delivered} = " in done.stdout  # the metrics scraped during the run
    assert "µs/delivery" in done.stdout  # every throughput figure beside its CPU
    assert "scenario" in done.stdout
    assert "target" in done.stdout


def test_the_in_process_figures_alone_take_seconds_and_need_no_sink(env: TestEnv) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "filter", "signing"],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": env["kafka_bootstrap"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = Path(done.stdout.strip().splitlines()[-1].removeprefix("saved: "))
    figures = {figure["measure"]: figure for figure in json.loads(saved.read_text())["figures"]}
    assert [figure["scenario"] for figure in figures.values()] == ["filter"] * 3 + ["signing"] * 7
    with_filter = next(figure for measure, figure in figures.items() if "50% accepted" in measure)
    assert with_filter["value"] > figures["no filter, 500 ~1 KB events"]["value"]
    assert figures["cost of the filter (JSON parse + evaluation)"]["unit"] == "µs/delivery"
    ed25519 = figures["request built, standard-ed25519, 200 ~1 KB events"]["value"]
    assert ed25519 > figures["request built, unsigned, 200 ~1 KB events"]["value"]  # it measured signing
    assert "nginx" not in done.stdout + done.stderr
