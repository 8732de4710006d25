"""The effective settings of a process: the core sections and every registered domain's.

:mod:`earthkeep.config` holds the core sections and the machinery and knows no
domain; :mod:`earthkeep.domains` knows the domains. This module sits above
both, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from earthkeep.config import SECTIONS, Section, Settings, build_settings, reference_markdown
from earthkeep.domains import settings_classes


def sections() -> tuple[type[Section], ...]:
    """Core sections first, then each domain's in registry order."""
    return (*SECTIONS, *settings_classes())


def load_settings(config_file: Path | None = None, **overrides: Mapping[str, Any]) -> Settings:
    """Build the effective settings, or raise :class:`~earthkeep.errors.ConfigError` in one line.

    ``overrides`` maps a section name to field values that win over everything
    (used by tests and the CLI's flags).
    """
    return build_settings(sections(), config_file, overrides)


def reference() -> str:
    """The configuration reference (docs/configuration.md), generated from every settings class."""
    return reference_markdown(sections())
