"""The ``downloads`` domain: the ``fetch`` job kind (its items are in the core catalog tables).

The job itself (:mod:`earthkeep.jobs.fetch`: the transfer engine and the
catalog behind it) is imported when the kind is registered, not with this
module, so that listing the domains (settings, ``earthkeep --help``) stays light.
"""

from __future__ import annotations

from typing import Any

from earthkeep.domain import Domain, DomainContext

KIND = "fetch"


def register(ctx: DomainContext[Any, Any]) -> None:
    """Register the ``fetch`` kind, its payload checked before it is queued."""
    from earthkeep.jobs.fetch import fetch_handler, validator

    ctx.registry.register(KIND, fetch_handler, description="download one URL into the store as an item",
                          validate=validator(ctx.settings.transfer.allow_private))


DOMAIN: Domain[Any, None] = Domain("downloads", register, job_kinds=(KIND,), cli={"fetch": "earthkeep.cli.fetch:fetch"})
