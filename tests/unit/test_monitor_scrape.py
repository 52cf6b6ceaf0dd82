"""pop3suite.load.monitor reads the reference server's /metrics: server-side command
latency between two scrapes, from a real prometheus_client endpoint."""

from __future__ import annotations

import pytest

from pop3suite.load.monitor import Monitor, _quantile, command_latency, metrics_url, scrape_commands
from pop3suite.server.metrics import ServerMetrics


@pytest.fixture
def metrics():
    served = ServerMetrics()
    port = served.serve("127.0.0.1", 0)
    yield served, f"http://127.0.0.1:{port}/metrics"
    served.stop()


def test_latency_between_two_scrapes_counts_only_the_run(metrics) -> None:
    """Commands before the first scrape are not counted; p50 falls in the bucket
    that holds the median."""
    served, url = metrics
    served.commands.observe("STAT", 0.2)  # before the run
    first = scrape_commands(url)
    for _ in range(9):
        served.commands.observe("STAT", 0.0003)
    served.commands.observe("STAT", 0.04)
    served.commands.observe("RETR", 0.002)
    latency = command_latency(first, scrape_commands(url))
    assert latency["STAT"]["count"] == 10 and latency["RETR"]["count"] == 1
    assert 0.25 < latency["STAT"]["p50_ms"] <= 0.5
    assert 25 < latency["STAT"]["p99_ms"] <= 50
    assert latency["STAT"]["mean_ms"] == pytest.approx((9 * 0.3 + 40) / 10, rel=1e-6)


def test_quantile_interpolates_like_prometheus() -> None:
    """histogram_quantile: linear inside the bucket, the lower bound for +Inf."""
    buckets = [(0.1, 0.0), (0.2, 10.0), (float("inf"), 10.0)]
    assert _quantile(buckets, 0.5) == pytest.approx(0.15)
    assert _quantile([(0.1, 0.0), (float("inf"), 4.0)], 0.5) == 0.1
    assert _quantile([], 0.5) is None


def test_monitor_writes_server_metrics_json(metrics, tmp_path) -> None:
    """A monitor given a metrics URL writes server_metrics.json; an unreachable
    one records the error instead of failing the run."""
    import json
    import os

    served, url = metrics
    import time

    monitor = Monitor(os.getpid(), interval=0.05, metrics_url=url).start()
    deadline = time.monotonic() + 5
    while not monitor.scrapes and time.monotonic() < deadline:  # the baseline scrape
        time.sleep(0.01)
    served.commands.observe("NOOP", 0.0001)
    monitor.stop()
    monitor.write(tmp_path)
    data = json.loads((tmp_path / "server_metrics.json").read_text())
    assert data["commands"]["NOOP"]["count"] == 1 and data["error"] is None
    assert metrics_url({"host": "127.0.0.1", "metrics_port": 9}) == "http://127.0.0.1:9/metrics"
    assert metrics_url({}) is None
    gone = Monitor(os.getpid(), interval=0.05, metrics_url="http://127.0.0.1:9/metrics").start()
    gone.stop()
    gone.write(tmp_path)
    assert "cannot scrape" in json.loads((tmp_path / "server_metrics.json").read_text())["error"]
