"""Loopback stand-ins for remote providers, and a fault injector to make them misbehave."""

from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.fileserver import create_file_app
from earthkeep.testbed.runner import serve, serve_app

__all__ = ["Fault", "FaultInjector", "create_file_app", "serve", "serve_app"]
