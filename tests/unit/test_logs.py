import json

import structlog

from earthkeep.logs import bind_trace, configure_logging, trace_id_from_headers


def test_trace_id_from_traceparent():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_from_headers({"traceparent": tp}) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_trace_id_from_request_id_and_fallback():
    assert trace_id_from_headers({"x-request-id": "abc-123"}) == "abc-123"
    generated = trace_id_from_headers({"x-request-id": "bad id with spaces"})
    assert len(generated) == 32
    assert trace_id_from_headers({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) != "0" * 32


def test_json_lines_carry_service_role_and_trace(capsys):
    import logging

    saved = logging.getLogger().handlers[:]
    configure_logging("INFO", service="earthkeep", role="worker", fmt="json")
    try:
        bind_trace("t-1")
        structlog.get_logger("x").info("fetched", source="gfs", bytes=10)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        rec = json.loads(line)
        assert rec["event"] == "fetched" and rec["service"] == "earthkeep" and rec["role"] == "worker"
        assert rec["trace_id"] == "t-1" and rec["bytes"] == 10
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = saved
