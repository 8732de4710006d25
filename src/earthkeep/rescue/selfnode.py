"""The server as a rescue node of its own: leases taken in-process, bags written into the server's store.

It registers under a ``node`` API key named :data:`KEY_NAME` (created on first
use; its secret is never needed in-process) and follows exactly the rules of
remote nodes (replication, leases, cross-verification).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from earthkeep.apikeys import create_key
from earthkeep.catalog.tables import ApiKey
from earthkeep.rescue import allocation
from earthkeep.rescue.node import RescueNode
from earthkeep.rescue.queries import dataset_document
from earthkeep.rescue.settings import rescue_settings

if TYPE_CHECKING:
    from earthkeep.runtime import Services

KEY_NAME = "earthkeep-server-node"
BAG_PREFIX = "rescue/bags"


def _server_key(services: Services) -> ApiKey:
    with services.sessions.begin() as s:
        key = s.scalars(select(ApiKey).where(ApiKey.name == KEY_NAME, ApiKey.revoked_at.is_(None))).first()
        if key is None:
            key, _ = create_key(s, KEY_NAME, ["node"])
        return key


class LocalNodeClient:
    """:class:`earthkeep.rescue.node.NodeClient` calling the domain functions directly."""

    def __init__(self, services: Services, key: ApiKey) -> None:
        self.services, self.key = services, key
        self.settings = rescue_settings(services)

    def _tx(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.services.sessions.begin() as s:
            return fn(s, *args, **kwargs)

    async def register(self, name: str, capacity_bytes: int, free_bytes: int) -> dict[str, Any]:
        node = await asyncio.to_thread(self._tx, allocation.register_node, self.key, name=name,
                                       capacity_bytes=capacity_bytes, free_bytes=free_bytes)
        return {"id": node.id, "name": node.name, "lease_s": self.settings.lease_s}

    async def allocate(self, free_bytes: int, max_items: int) -> list[dict[str, Any]]:
        leases = await asyncio.to_thread(self._tx, allocation.allocate, self.settings, self.key,
                                         free_bytes=free_bytes, max_items=max_items)
        return [lease.as_dict() for lease in leases]

    async def heartbeat(self, allocation_ids: list[int], free_bytes: int) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self._tx, allocation.heartbeat, self.settings, self.key,
                                            allocation_ids, free_bytes=free_bytes))

    async def release(self, allocation_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self._tx, allocation.release, self.settings, self.key, allocation_id,
                                            **body))

    async def dataset(self, dataset_id: int) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self._tx, dataset_document, dataset_id))


async def rescue_here(services: Services, *, rounds: int = 1, capacity_bytes: int | None = None) -> dict[str, Any]:
    """Run ``rounds`` allocation rounds as the server's own node; returns the node's counts."""
    key = await asyncio.to_thread(_server_key, services)
    node = RescueNode(LocalNodeClient(services, key), services.store, services.settings.transfer,
                      name="server", capacity_bytes=capacity_bytes or (1 << 40), bag_prefix=BAG_PREFIX)
    stats = await node.run(until_empty=True, max_rounds=rounds)
    return {"rounds": stats.rounds, "leases": stats.leases, "done": stats.done, "failed": stats.failed,
            "lost": stats.lost, "bytes": stats.bytes}
