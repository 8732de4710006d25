"""Prometheus collectors computed at scrape time from the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from earthkeep.catalog.tables import Item
from earthkeep.errors import EarthkeepError

log = structlog.get_logger(__name__)


class CatalogCollector(Collector):
    """Jobs per status and kind, and items per collection."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("earthkeep_jobs", "Jobs by status", labels=["status"])
        items = GaugeMetricFamily("earthkeep_items", "Catalog items by collection", labels=["collection"])
        try:
            for status, n in self.services.queue.counts().items():
                jobs.add_metric([status], n)
            with self.services.sessions() as s:
                for coll, n in s.execute(select(Item.collection, func.count()).group_by(Item.collection)):
                    items.add_metric([coll], n)
        except (EarthkeepError, Exception) as exc:  # a scrape must never fail the API
            log.warning("metrics.catalog_unavailable", error=str(exc))
        yield jobs
        yield items
