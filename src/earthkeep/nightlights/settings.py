"""Settings of the nightlights domain (section ``[nightlights]``).

The Earthdata token keeps the name NASA's own tools use (``EARTHDATA_TOKEN``);
Earth Engine takes a service account and its JSON key file. Everything else
starts with ``NIGHTLIGHTS_``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator

from earthkeep.config import Section


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class NightlightsSettings(Section):
    """Black Marble acquisition, processing thresholds, limits on areas and tiles."""

    section: ClassVar[str] = "nightlights"

    earthdata_token: SecretStr | None = Field(
        None, validation_alias=_env("EARTHDATA_TOKEN", "earthdata_token"),
        description="NASA Earthdata bearer token for LAADS downloads (urs.earthdata.nasa.gov -> Generate Token)",
    )
    laads_url: str = Field(
        "https://ladsweb.modaps.eosdis.nasa.gov", validation_alias=_env("NIGHTLIGHTS_LAADS_URL", "laads_url"),
        description="base URL of the LAADS DAAC archive (the testbed emulator in tests)",
    )
    laads_collection: str = Field(
        "5200", pattern=r"^\d{1,4}$", validation_alias=_env("NIGHTLIGHTS_LAADS_COLLECTION", "laads_collection"),
        description="LAADS archive set: 5200 is Black Marble collection 2 (VNP46A2.002)",
    )
    ee_service_account: str | None = Field(
        None, validation_alias=_env("EARTHENGINE_SERVICE_ACCOUNT", "ee_service_account"),
        description="Earth Engine service account e-mail",
    )
    ee_key_file: str | None = Field(
        None, validation_alias=_env("EARTHENGINE_KEY_FILE", "ee_key_file"),
        description="path of the service account's JSON key",
    )
    ee_project: str | None = Field(
        None, validation_alias=_env("EARTHENGINE_PROJECT", "ee_project"),
        description="Google Cloud project registered for Earth Engine",
    )
    ee_band: Literal["DNB_BRDF_Corrected_NTL", "Gap_Filled_DNB_BRDF_Corrected_NTL"] = Field(
        "DNB_BRDF_Corrected_NTL", validation_alias=_env("NIGHTLIGHTS_EE_BAND", "ee_band"),
    )
    default_source: Literal["laads_download", "earth_engine_export"] = Field(
        "laads_download", validation_alias=_env("NIGHTLIGHTS_SOURCE", "default_source"),
    )
    lit_threshold: float = Field(
        0.5, ge=0, validation_alias=_env("NIGHTLIGHTS_LIT_THRESHOLD", "lit_threshold"),
        description="radiance (nW/cm2/sr) above which a pixel counts as lit",
    )
    quality_flags: str = Field(
        "0,1", validation_alias=_env("NIGHTLIGHTS_QUALITY_FLAGS", "quality_flags"),
        description="Mandatory_Quality_Flag values kept (0 persistent, 1 ephemeral high quality; 2 poor)",
    )
    mask_cloudy: bool = Field(
        True, validation_alias=_env("NIGHTLIGHTS_MASK_CLOUDY", "mask_cloudy"),
        description="drop pixels whose QF_Cloud_Mask says probably or confidently cloudy",
    )
    max_vertices: int = Field(20_000, ge=4, validation_alias=_env("NIGHTLIGHTS_MAX_VERTICES", "max_vertices"))
    max_area_km2: float = Field(
        1_000_000.0, gt=0, validation_alias=_env("NIGHTLIGHTS_MAX_AREA_KM2", "max_area_km2"),
    )
    max_months: int = Field(120, ge=1, validation_alias=_env("NIGHTLIGHTS_MAX_MONTHS", "max_months"))
    tile_max_zoom: int = Field(12, ge=0, le=22, validation_alias=_env("NIGHTLIGHTS_TILE_MAX_ZOOM", "tile_max_zoom"))
    tile_vmax: float = Field(
        100.0, gt=0, validation_alias=_env("NIGHTLIGHTS_TILE_VMAX", "tile_vmax"),
        description="radiance shown at the top of the colour ramp (log scale from 0)",
    )
    colormap: str = Field("inferno", validation_alias=_env("NIGHTLIGHTS_COLORMAP", "colormap"))
    sweep_schedule: str = Field(
        "*/5 * * * *", validation_alias=_env("NIGHTLIGHTS_SWEEP_SCHEDULE", "sweep_schedule"),
        description="cron of the check that starts processing whose trigger was lost (the seed's 5 minutes)",
    )

    @field_validator("quality_flags")
    @classmethod
    def _flags(cls, v: str) -> str:
        try:
            flags = [int(x) for x in v.replace(" ", "").split(",") if x]
        except ValueError:
            raise ValueError("expected comma-separated integers such as 0,1") from None
        if not flags or any(not 0 <= f <= 255 for f in flags):
            raise ValueError("expected one or more flag values between 0 and 255")
        return ",".join(str(f) for f in flags)

    @property
    def accepted_flags(self) -> tuple[int, ...]:
        """The Mandatory_Quality_Flag values whose pixels are kept."""
        return tuple(int(x) for x in self.quality_flags.split(","))

    @field_validator("laads_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/")
