"""The ``earthkeep`` command line."""
