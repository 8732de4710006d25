"""The HTTP API: ``create_app()`` wires routers to the services of one process."""
