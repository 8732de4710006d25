"""Jobs: the durable queue, handlers by kind, and the worker loop."""
