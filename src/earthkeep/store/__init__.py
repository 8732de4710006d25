"""Object store: a small port (``Store``) and its adapters."""

from earthkeep.store.base import ObjectInfo, Store
from earthkeep.store.keys import safe_key

__all__ = ["ObjectInfo", "Store", "safe_key"]
