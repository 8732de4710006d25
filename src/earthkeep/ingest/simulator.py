"""Simulated weather stations: plausible diurnal and synoptic patterns, plus deliberate faults.

Each station has a latitude, an elevation and a climate; its temperature
follows the sun (minimum near dawn, maximum mid-afternoon local solar time),
pressure drifts with passing fronts, humidity falls as the air warms, rain
comes with low pressure and high humidity, and wind picks up with fronts.

The simulator can also misbehave on purpose: send exact duplicates, hold a
record back and send it late (out of order), and send invalid records (out of
range, wrong types, unknown station, missing fields, timestamps in the future).
:attr:`Simulator.expected` is the set of distinct valid keys sent so far, which
is what the database must hold afterwards (kept only with ``keep_keys``: a
long-running generator would otherwise grow by one key per record, about
200 MB an hour at 500 records/s); :attr:`Simulator.valid_sent` counts them
either way, since every valid record has a key of its own.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from earthkeep.ingest.models import Station, dedupe_key

INVALID_KINDS = ("range", "type", "unknown_station", "missing", "future", "extra_field")


@dataclass
class SimStation:
    station: Station
    clock: datetime
    mean_temp: float
    amplitude: float
    pressure_anomaly: float = 0.0
    temp_anomaly: float = 0.0
    wind_direction: float = 200.0


def make_stations(n: int, *, seed: int = 1, prefix: str = "SIM") -> list[Station]:
    """``n`` stations spread over the globe (deterministic for a seed)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lat, lon = round(rng.uniform(-60, 70), 4), round(rng.uniform(-180, 180), 4)
        out.append(Station(id=f"{prefix}{i:04d}", name=f"Simulated station {i}", latitude=lat, longitude=lon,
                           elevation=round(max(0.0, rng.gauss(300, 400)), 1)))
    return out


@dataclass
class Simulator:
    """Produces observation records (dicts, as a station would POST them)."""

    stations: list[Station]
    start: datetime
    step_s: float = 60.0
    seed: int = 1
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    invalid_rate: float = 0.0
    late_by: int = 50
    keep_keys: bool = True
    expected: set[str] = field(default_factory=set)
    valid_sent: int = 0  # distinct valid records made (each station's clock moves on every one)
    sent: int = 0
    invalid_sent: int = 0
    duplicates_sent: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._sims = [self._sim(s) for s in self.stations]
        self._next = 0
        self._recent: deque[dict[str, Any]] = deque(maxlen=1000)
        self._held: deque[tuple[int, dict[str, Any]]] = deque()

    def _sim(self, s: Station) -> SimStation:
        mean = 27 - 0.45 * abs(s.latitude) - 0.0065 * (s.elevation or 0)
        return SimStation(s, self.start, mean, 4 + 6 * abs(s.latitude) / 90)

    def batch(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` records, faults included."""
        return [self._one() for _ in range(n)]

    def flush(self) -> list[dict[str, Any]]:
        """Every record still held back to be sent late."""
        out = [rec for _, rec in self._held]
        self._held.clear()
        return out

    def _one(self) -> dict[str, Any]:
        self.sent += 1
        if self._held and self._held[0][0] <= self.sent:
            return self._held.popleft()[1]
        roll = self._rng.random()
        if roll < self.invalid_rate:
            self.invalid_sent += 1
            return self._invalid()
        if roll < self.invalid_rate + self.duplicate_rate and self._recent:
            self.duplicates_sent += 1
            return dict(self._rng.choice(self._recent))
        rec = self._valid()
        if self._rng.random() < self.late_rate:  # hold it back; send a newer one now
            self._held.append((self.sent + self.late_by, rec))
            return self._valid()
        return rec

    def _valid(self) -> dict[str, Any]:
        sim = self._sims[self._next]
        self._next = (self._next + 1) % len(self._sims)
        rec = weather(sim, self._rng)
        sim.clock += timedelta(seconds=self.step_s)
        self._recent.append(rec)
        self.valid_sent += 1
        if self.keep_keys:
            self.expected.add(dedupe_key(rec["station_id"], datetime.fromisoformat(rec["timestamp"])))
        return rec

    def _invalid(self) -> dict[str, Any]:
        kind = self._rng.choice(INVALID_KINDS)
        sim = self._sims[self._rng.randrange(len(self._sims))]
        rec = {"station_id": sim.station.id, "timestamp": sim.clock.isoformat(), "temperature": 10.0}
        if kind == "range":
            rec["temperature"] = self._rng.choice([-120.0, 75.5, 999.0])
        elif kind == "type":
            rec["temperature"] = self._rng.choice(["warm", True, [1], {"v": 1}])
        elif kind == "unknown_station":
            rec["station_id"] = f"NOPE{self._rng.randrange(1000)}"
        elif kind == "missing":
            rec.pop(self._rng.choice(["station_id", "timestamp"]))
        elif kind == "future":
            ahead = datetime.now(UTC) + timedelta(days=2)
            rec["timestamp"] = ahead.replace(minute=0, second=0, microsecond=0).isoformat()
        else:
            rec["temprature"] = 10.0
        return rec


def weather(sim: SimStation, rng: random.Random) -> dict[str, Any]:
    """One plausible observation of ``sim`` at its clock; advances its weather state."""
    t = sim.clock
    solar_hour = (t.hour + t.minute / 60 + sim.station.longitude / 15) % 24
    diurnal = math.sin(2 * math.pi * (solar_hour - 9) / 24)  # min ~03h, max ~15h
    season = math.cos(2 * math.pi * (t.timetuple().tm_yday - 200) / 365.25)
    season *= 1 if sim.station.latitude >= 0 else -1
    sim.pressure_anomaly = 0.995 * sim.pressure_anomaly + rng.gauss(0, 0.4)
    sim.temp_anomaly = 0.98 * sim.temp_anomaly + rng.gauss(0, 0.15)
    sim.wind_direction = (sim.wind_direction + rng.gauss(0, 8)) % 360
    temp = sim.mean_temp + sim.amplitude * diurnal + 8 * season * abs(sim.station.latitude) / 60 \
        + sim.temp_anomaly
    temp = min(55.0, max(-85.0, temp))
    humidity = min(100.0, max(3.0, 75 - 2.5 * sim.amplitude * diurnal - 1.5 * sim.pressure_anomaly
                              + rng.gauss(0, 4)))
    station_p = 1013.25 * math.exp(-(sim.station.elevation or 0) / 8434)
    pressure = min(1090.0, max(450.0, station_p + sim.pressure_anomaly))
    wind = min(60.0, abs(rng.gauss(3 + 0.3 * abs(sim.pressure_anomaly), 1.5)))
    rain = rng.expovariate(1.5) if humidity > 90 and sim.pressure_anomaly < -3 else 0.0
    return {"station_id": sim.station.id, "timestamp": t.isoformat().replace("+00:00", "Z"),
            "temperature": round(temp, 2), "humidity": round(humidity, 1), "pressure": round(pressure, 1),
            "wind_speed": round(wind, 2), "wind_direction": round(sim.wind_direction, 1),
            "precipitation": round(min(rain, 100.0), 2)}
