"""Nightlights settings: the Earthdata token's usual name, flags parsed from text."""

import pytest
from pydantic import ValidationError

from earthkeep.nightlights.settings import NightlightsSettings


def test_environment_names(monkeypatch):
    monkeypatch.setenv("EARTHDATA_TOKEN", "secret-token")
    monkeypatch.setenv("NIGHTLIGHTS_QUALITY_FLAGS", "0")
    monkeypatch.setenv("NIGHTLIGHTS_LIT_THRESHOLD", "1.5")
    monkeypatch.setenv("EARTHENGINE_SERVICE_ACCOUNT", "svc@project.iam.gserviceaccount.com")
    s = NightlightsSettings()
    assert s.earthdata_token.get_secret_value() == "secret-token"
    assert s.accepted_flags == (0,) and s.lit_threshold == 1.5
    assert s.ee_service_account.endswith("gserviceaccount.com") and s.ee_key_file is None
    assert s.laads_collection == "5200" and s.laads_url == "https://ladsweb.modaps.eosdis.nasa.gov"


@pytest.mark.parametrize("flags", ["", "a,b", "0,300"])
def test_bad_quality_flags_are_refused(flags):
    with pytest.raises(ValidationError, match=r"quality_flags"):
        NightlightsSettings(quality_flags=flags)
