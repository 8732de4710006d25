"""Station observations: models, collector, broker adapters, consumer, storage, queries, simulator.

See ``docs/ingest.md``. Nothing here connects or reads settings at import.
"""
