"""The transfer engine's HTTP client: one verifying SSL context per process, not one per engine."""

from __future__ import annotations

import ssl

from earthkeep.config import TransferSettings
from earthkeep.transfer.http import make_client


async def test_clients_share_one_verifying_ssl_context():
    settings = TransferSettings()
    first, second = make_client(settings), make_client(settings)
    try:
        contexts = [c._transport._pool._ssl_context for c in (first, second)]  # httpcore's pool holds it
        assert contexts[0] is contexts[1]
        assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    finally:
        await first.aclose()
        await second.aclose()
