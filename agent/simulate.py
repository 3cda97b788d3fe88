"""A simulated meter: telegram generator for demos, tests and benchmarks. Sans-I/O.

Two flavours, laid out exactly as the real meters in shared/data lay them out:
- `hu`: the E.ON Hungary AUX meter, a 2342-byte telegram every 10 s with the 1024-byte 0xFF text
  message and the monthly billing profile;
- `dsmr5`: a Dutch DSMR 5 meter (Iskra AM550 layout) with a gas meter on M-Bus channel 1, every 1 s.

Values follow a simple physical model: household load per phase as a random walk, PV export around
noon, mains voltage around 230 V, energy registers integrating the power with the meter's
truncation to whole Wh. The same seed gives the same telegrams.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.crc import crc16_arc

FLAVOURS = ("hu", "dsmr5")
DEFAULT_INTERVAL = {"hu": 10.0, "dsmr5": 1.0}
_ZONES = {"hu": ZoneInfo("Europe/Budapest"), "dsmr5": ZoneInfo("Europe/Amsterdam")}


def seal(body: bytes) -> bytes:
    """Append the CRC-16/ARC checksum and line end to a body ending in `!`."""
    return body + b"%04X\r\n" % crc16_arc(body)


@dataclass(slots=True)
class _Phase:
    load_w: float
    volts: float


class SimulatedMeter:
    """Generates consecutive telegrams of one meter; `next_telegram()` advances by one interval."""

    def __init__(
        self,
        flavour: str = "hu",
        *,
        start: datetime | None = None,
        interval: float | None = None,
        seed: int = 1,
        serial: str = "1234567",
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r} (choose from {', '.join(FLAVOURS)})")
        self.flavour = flavour
        self.interval = interval if interval is not None else DEFAULT_INTERVAL[flavour]
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        self.zone = _ZONES[flavour]
        self.time = (
            (start or datetime(2024, 6, 1, tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
        )
        self.serial = serial
        self.rng = random.Random(seed)
        self.phases = [_Phase(300.0 + 200 * i, 230.0) for i in range(3)]
        # Register state in Wh (import, export per tariff) and varh; fractions carried over.
        self.import_wh = [4_129_862.0, 4_104_662.0]
        self.export_wh = [287_820.0, 88_720.0]
        self.reactive_varh = [763_344.0, 1_916_063.0, 758_588.0, 4_756.0, 13_978.0, 1_902_085.0]
        self.gas_m3 = 1234.567
        self.count = 0
        self._last: dict[str, float] = {}

    # -- model ---------------------------------------------------------------------------

    def _local(self, when: datetime) -> tuple[datetime, str]:
        local = when.astimezone(self.zone)
        return local, "S" if local.dst() else "W"

    def _stamp(self, when: datetime) -> str:
        local, flag = self._local(when)
        return local.strftime("%y%m%d%H%M%S") + flag

    def _advance(self) -> None:
        rng = self.rng
        local, _ = self._local(self.time)
        hour = local.hour + local.minute / 60
        sun = max(0.0, 1 - abs(hour - 13) / 5)  # PV bell around 13:00
        for phase in self.phases:
            phase.load_w = min(9000.0, max(50.0, phase.load_w + rng.gauss(0, 60)))
            phase.volts = min(
                258.0, max(205.0, phase.volts + rng.gauss(0, 0.4) + (230.5 - phase.volts) * 0.02)
            )
        pv_w = 4500.0 * sun * (0.8 + 0.2 * rng.random())
        load = sum(p.load_w for p in self.phases)
        net = load - pv_w
        self._last = {"import_w": max(0.0, net), "export_w": max(0.0, -net), "pv_w": pv_w}
        hours = self.interval / 3600
        tariff = 0 if 7 <= local.hour < 23 else 1
        self._tariff = tariff + 1
        self.import_wh[tariff] += max(0.0, net) * hours
        self.export_wh[tariff] += max(0.0, -net) * hours
        # Quadrants Q1–Q4 (5.8.0–8.8.0); the meter writes 3.8.0 and 4.8.0 as Q1 + Q2, Q3 + Q4.
        for i, share in ((2, 0.09), (3, 0.01), (4, 0.01), (5, 0.24)):
            self.reactive_varh[i] += load * share * hours
        if self.count % max(1, int(300 / self.interval)) == 0:
            self.gas_m3 += rng.random() * 0.05

    def next_telegram(self) -> bytes:
        """The next telegram, sealed, with CRLF line ends; time advances by one interval."""
        if self.count:
            self.time += timedelta(seconds=self.interval)
        self._advance()
        self.count += 1
        body = self._hu() if self.flavour == "hu" else self._dsmr5()
        return seal(body.encode("latin-1"))

    # -- layouts -------------------------------------------------------------------------

    @staticmethod
    def _kwh(*wh: float) -> str:
        """A register in kWh with three decimals; a total is the sum of its parts as written
        (truncated to whole Wh each), as the real meter's 1.8.0 = Σ 1.8.1–1.8.4 is."""
        return f"{sum(int(w) for w in wh) / 1000:010.3f}"

    def _hu(self) -> str:
        kwh = self._kwh
        imp, exp, rv = self.import_wh, self.export_wh, self.reactive_varh
        p = self.phases
        amps = [int(ph.load_w / ph.volts) for ph in p]
        pf = [min(1.0, 0.85 + 0.15 * self.rng.random()) for _ in range(4)]
        sn = self.serial
        lines = [
            f"/AUX5990{sn}",
            "",
            f"0-0:1.0.0({self._stamp(self.time)})",
            f"0-0:42.0.0(AUX103030{sn})",
            f"0-0:96.1.0(990{sn})",
            f"0-0:96.14.0({self._tariff:04d})",
            "0-0:96.50.68(ON)",
            "0-0:17.0.0(90.000*kW)",
            f"1-0:1.8.0({kwh(*imp)}*kWh)",
            f"1-0:1.8.1({kwh(imp[0])}*kWh)",
            f"1-0:1.8.2({kwh(imp[1])}*kWh)",
            "1-0:1.8.3(000000.000*kWh)",
            "1-0:1.8.4(000000.000*kWh)",
            f"1-0:2.8.0({kwh(*exp)}*kWh)",
            f"1-0:2.8.1({kwh(exp[0])}*kWh)",
            f"1-0:2.8.2({kwh(exp[1])}*kWh)",
            "1-0:2.8.3(000000.000*kWh)",
            "1-0:2.8.4(000000.000*kWh)",
            f"1-0:3.8.0({kwh(rv[2], rv[3])}*kvarh)",
            f"1-0:4.8.0({kwh(rv[4], rv[5])}*kvarh)",
            f"1-0:5.8.0({kwh(rv[2])}*kvarh)",
            f"1-0:6.8.0({kwh(rv[3])}*kvarh)",
            f"1-0:7.8.0({kwh(rv[4])}*kvarh)",
            f"1-0:8.8.0({kwh(rv[5])}*kvarh)",
            f"1-0:15.8.0({kwh(*imp, *exp)}*kWh)",
            *(f"1-0:{c}.7.0({ph.volts:05.1f}*V)" for c, ph in zip((32, 52, 72), p, strict=True)),
            *(f"1-0:{c}.7.0({a:03d}*A)" for c, a in zip((31, 51, 71), amps, strict=True)),
            *(f"1-0:{c}.7.0({f:.3f})" for c, f in zip((13, 33, 53, 73), pf, strict=True)),
            f"1-0:14.7.0({50 + self.rng.gauss(0, 0.02):05.2f}*Hz)",
            f"1-0:1.7.0({self._last['import_w'] / 1000:06.3f}*kW)",
            f"1-0:2.7.0({self._last['export_w'] / 1000:06.3f}*kW)",
            "1-0:5.7.0(00.000*kvar)",
            "1-0:6.7.0(00.000*kvar)",
            "1-0:7.7.0(00.000*kvar)",
            f"1-0:8.7.0({sum(ph.load_w for ph in p) * 0.2 / 1000:06.3f}*kvar)",
            "0-0:98.1.0(230801000000S)(007823.105*kWh)(003971.715*kWh)(003851.390*kWh)"
            "(000077.084*kWh)(000077.048*kWh)(000000.036*kWh)(000751.194*kvarh)(001770.619*kvarh)"
            "(000749.112*kvarh)(000002.082*kvarh)(000001.573*kvarh)(001769.046*kvarh)"
            "(007900.207*kWh)(04.792*kW)(04.592*kW)(04.792*kW)(09.132*kW)(09.132*kW)(00.056*kW)",
            "0-0:96.13.0(" + "\xff" * 1024 + ")",
            "!",
        ]
        return "\r\n".join(lines)

    def _dsmr5(self) -> str:
        kwh = self._kwh
        imp, exp = self.import_wh, self.export_wh
        p = self.phases
        share = [ph.load_w / max(1.0, sum(x.load_w for x in p)) for ph in p]
        ident = ("E0044007" + self.serial + "19").encode().hex().upper()
        gas_id = ("G0039001" + self.serial + "19").encode().hex().upper()
        gas_time = self.time.replace(minute=self.time.minute - self.time.minute % 5, second=0)
        lines = [
            "/ISK5\\2M550T-1012",
            "",
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({self._stamp(self.time)})",
            f"0-0:96.1.1({ident})",
            f"1-0:1.8.1({kwh(imp[0])}*kWh)",
            f"1-0:1.8.2({kwh(imp[1])}*kWh)",
            f"1-0:2.8.1({kwh(exp[0])}*kWh)",
            f"1-0:2.8.2({kwh(exp[1])}*kWh)",
            f"0-0:96.14.0({self._tariff:04d})",
            f"1-0:1.7.0({self._last['import_w'] / 1000:06.3f}*kW)",
            f"1-0:2.7.0({self._last['export_w'] / 1000:06.3f}*kW)",
            "0-0:96.7.21(00005)",
            "0-0:96.7.9(00003)",
            "1-0:99.97.0(1)(0-0:96.7.19)(190326095015W)(0000002014*s)",
            "1-0:32.32.0(00001)",
            "1-0:52.32.0(00001)",
            "1-0:72.32.0(00192)",
            "1-0:32.36.0(00001)",
            "1-0:52.36.0(00001)",
            "1-0:72.36.0(00001)",
            "0-0:96.13.0()",
            *(f"1-0:{c}.7.0({ph.volts:05.1f}*V)" for c, ph in zip((32, 52, 72), p, strict=True)),
            *(
                f"1-0:{c}.7.0({int(ph.load_w / ph.volts):03d}*A)"
                for c, ph in zip((31, 51, 71), p, strict=True)
            ),
            *(
                f"1-0:{c}.7.0({self._last['import_w'] * s / 1000:06.3f}*kW)"
                for c, s in zip((21, 41, 61), share, strict=True)
            ),
            *(
                f"1-0:{c}.7.0({self._last['export_w'] * s / 1000:06.3f}*kW)"
                for c, s in zip((22, 42, 62), share, strict=True)
            ),
            "0-1:24.1.0(003)",
            f"0-1:96.1.0({gas_id})",
            f"0-1:24.2.1({self._stamp(gas_time)})({self.gas_m3:09.3f}*m3)",
            "!",
        ]
        return "\r\n".join(lines)
