"""The catalog: items with assets, runs, jobs, API keys and domain tables."""
