"""A short live session with the Prometheus exporter on, against the local Alpaca server: warm-up,
streamed bars, an order the broker rejects and both streams dropped; the exporter scraped over HTTP.

``exported_metric_families`` gives what a Prometheus scraping the deployment would see (the
deployment files' test checks every Grafana query against it)."""
from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from brokers.alpaca.local_server import AlpacaTestServer
from tests.live.harness import Deployment, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(url: str) -> dict:
    """The metric families at ``url``, by name (counters without their ``_total``)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict, name: str, **labels) -> float:
    """The value of the sample ``name`` (``trader_bars_total``, ``..._bucket`` ...) with ``labels``."""
    family_name = next(f for f in families if name == f or name.startswith(f + "_"))
    found: list[Sample] = [s for s in families[family_name].samples
                           if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def scraped_after(url: str, bars: int) -> dict | None:
    """The families at ``url`` once ``bars`` bars were decided, else None."""
    families = scrape(url)
    return families if sample(families, "trader_bars_total") >= bars else None


@dataclass
class MetricsSession:
    families: dict  # scraped after the last bar, the runner still running
    deployment: Deployment
    rejected_symbol: str
    url: str


def run_metrics_session(tmp_path: Path) -> MetricsSession:
    """Warm-up, 4 bars, a rejection of XOM's next order, 4 bars, both streams dropped and back, 4 bars;
    scraped over HTTP, then the runner stopped."""
    from cli.live import metrics_from_config
    from ops.observer import Observers

    with AlpacaTestServer(commission_bps=1.0, slippage_bps=5.0) as server:
        deployment = Deployment(server, tmp_path, metrics_port=free_port())
        cfg = deployment.config
        metrics = metrics_from_config(cfg)
        url = metrics.url(cfg.live.metrics_host)
        try:
            deployment.start(observers=Observers(metrics))
            deployment.push(deployment.live[:4])
            server.reject_next("asset XOM is not tradable", symbol="XOM", status=422)
            deployment.push(deployment.live[4:8])
            server.drop_streams()
            wait_for(lambda: all(sample(scrape(url), "trader_reconnects_total", stream=s) >= 1
                                 for s in ("trades", "bars")), timeout=15, what="both streams to reconnect")
            wait_for(lambda: server.connected() == (1, 1), timeout=15, what="the streams to subscribe again")
            deployment.push(deployment.live[8:12])
            # the bar's metrics are set after its state is saved (what push waits for): the last bar's too
            decided = len(deployment.history) + 12
            families = wait_for(lambda: scraped_after(url, decided), what="the last bar's metrics")
            deployment.stop()
        finally:
            if deployment.thread is not None and deployment.thread.is_alive():
                deployment.stop()
            metrics.close()
    return MetricsSession(families, deployment, "XOM", url)


def exported_metric_families(tmp_path: Path) -> dict:
    """The metric families (``prometheus_client.Metric`` by name) a live session exports."""
    return run_metrics_session(tmp_path).families
