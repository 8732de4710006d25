"""earthkeep: collect, keep and serve environmental data."""

__version__ = "0.1.0"
