"""A simulated meter: telegram generator for demos, tests and benchmarks. Sans-I/O.

One flavour for every kind of meter the decoder knows, each laid out as its specification and the
published telegrams of that meter lay it out (line order, OBIS codes, units, number widths, header,
checksum or none), generated, never copied:

- `dsmr22`, `dsmr3`: Iskra MT382, no clock line and no checksum, gas as the hourly value on the
  line after `0-1:24.3.0`; every 10 s;
- `dsmr4`: Kaifa DSMR 4.2 with an hourly gas meter, every 10 s; `dsmr5`: Iskra AM550 with a gas
  meter on M-Bus channel 1 (five-minute values), every 1 s;
- `fluvius`: Belgian e-MUCS, current quarter-hour demand `1-0:1.4.0`, the month's peak
  `1-0:1.6.0` and the monthly peaks `0-0:98.1.0`, gas `0-1:24.2.3` and water on M-Bus, every 1 s;
- `lux`: Luxembourg's Smarty, totals only, reactive and apparent power, gas; every 10 s;
- `se`: a Swedish meter (Ellevio), totals, reactive energy and per-phase reactive power; 10 s;
- `t210dr`: Austrian Sagemcom T210-D-r counting in Wh, W, varh and var; every 1 s;
- `iskra-ie`: the Irish Iskra, its clock and S/W flag on Irish time; every 10 s;
- `easymeter`: EasyMeter Q3D behind a gateway: `*255` codes, no clock, no checksum, two lines the
  gateway appends after `!`; every 2 s;
- `hu`: the E.ON Hungary AUX meter, a 2342-byte telegram every 10 s with the 1024-byte 0xFF text
  message and the monthly billing profile; `hu-sagemcom`: E.ON Hungary on a Sagemcom, with
  quadrant registers, current limits and a billing profile that follows the registers;
- `holley`: a Holley meter of the Hungarian layout that seals with CRC-16/X25.

Values follow a simple physical model: household load per phase as a random walk, PV export around
noon, mains voltage around 230 V, energy registers integrating the power with the meter's
truncation to its last digit (a total is the sum of its parts as written), reactive energy per
quadrant, M-Bus values captured at the device's cadence and standing still in between, the meter's
clock in the flavour's zone. The same seed gives the same telegrams.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.core.crc import FUNCTIONS, CrcKind


@dataclass(frozen=True, slots=True)
class Flavour:
    zone: str
    interval: float  # seconds between telegrams
    crc: CrcKind | None  # None: the meter sends no checksum
    pv: bool = True  # the simulated household exports from solar panels around noon


_SPECS: dict[str, Flavour] = {
    "dsmr22": Flavour("Europe/Amsterdam", 10.0, None),
    "dsmr3": Flavour("Europe/Amsterdam", 10.0, None),
    "dsmr4": Flavour("Europe/Amsterdam", 10.0, CrcKind.ARC),
    "dsmr5": Flavour("Europe/Amsterdam", 1.0, CrcKind.ARC),
    "fluvius": Flavour("Europe/Brussels", 1.0, CrcKind.ARC),
    "lux": Flavour("Europe/Luxembourg", 10.0, CrcKind.ARC),
    "se": Flavour("Europe/Stockholm", 10.0, CrcKind.ARC),
    "t210dr": Flavour("Europe/Vienna", 1.0, CrcKind.ARC),
    "iskra-ie": Flavour("Europe/Dublin", 10.0, CrcKind.ARC),
    # The Q3D writes one power line (1.7.0), where export would be negative power, which the
    # schema's power_import_kw does not take: this household has no panels.
    "easymeter": Flavour("Europe/Berlin", 2.0, None, pv=False),
    "hu": Flavour("Europe/Budapest", 10.0, CrcKind.ARC),
    "hu-sagemcom": Flavour("Europe/Budapest", 10.0, CrcKind.ARC),
    "holley": Flavour("Europe/Budapest", 10.0, CrcKind.X25),
}
FLAVOURS = tuple(_SPECS)
# The two flavours the noise model was built on and bench/ measures repair on (bench/RESULTS.md).
# Laid out before the model grew quadrants, demand and M-Bus cadences, their telegrams and their
# draws from the seed stay byte for byte what was measured.
MEASURED_FLAVOURS = ("hu", "dsmr5")
DEFAULT_INTERVAL = {name: spec.interval for name, spec in _SPECS.items()}
CRC_KINDS: dict[str, CrcKind | None] = {name: spec.crc for name, spec in _SPECS.items()}
# The telegram's clock writes two-digit years (YYMMDDhhmmss): 2000 to 2099 is all it can say.
FIRST_YEAR, LAST_YEAR = 2000, 2099
MIN_INTERVAL, MAX_INTERVAL = 0.001, 86400.0  # seconds; outside, time stands still or overflows
QUARTER = 900  # seconds: the demand period of Belgian and Hungarian meters


def seal(body: bytes, kind: CrcKind = CrcKind.ARC) -> bytes:
    """Append the checksum (CRC-16/ARC unless told) and line end to a body ending in `!`."""
    return body + b"%04X\r\n" % FUNCTIONS[kind](body)


@dataclass(slots=True)
class _Phase:
    load_w: float
    volts: float


@dataclass(slots=True)
class _Mbus:
    """An M-Bus device: its meter's value captured every `cadence` seconds (at `offset` past the
    boundary, by the device's own clock); between captures the telegram repeats the last one."""

    cadence: int
    offset: int
    time: datetime | None = None
    value: float = 0.0

    def capture(self, now: datetime, value: float) -> None:
        epoch = now.timestamp() - self.offset
        at = datetime.fromtimestamp(epoch - epoch % self.cadence + self.offset, UTC)
        if self.time is None or at > self.time:
            self.time, self.value = at, value


@dataclass(slots=True)
class _Registers:
    """Energy per tariff (Wh): import, export, and reactive energy per quadrant Q1–Q4 (varh)."""

    imports: list[float]
    exports: list[float]
    quadrants: list[list[float]]  # [tariff][quadrant]

    def reactive(self, direction: int, tariff: int | None = None) -> list[float]:
        """Reactive import (Q1 + Q2, direction 0) or export (Q3 + Q4), per tariff or all."""
        tariffs = range(2) if tariff is None else (tariff,)
        return [self.quadrants[t][q] for t in tariffs for q in (2 * direction, 2 * direction + 1)]

    def quadrant(self, q: int) -> list[float]:
        return [self.quadrants[t][q] for t in range(2)]

    def scaled(self, factor: float) -> _Registers:
        return _Registers(
            [int(w * factor) for w in self.imports],
            [int(w * factor) for w in self.exports],
            [[int(w * factor) for w in row] for row in self.quadrants],
        )


@dataclass(slots=True)
class _Profile:
    """A month's billing data: the registers at its start and the previous month's maxima."""

    time: datetime
    registers: _Registers
    maxima: dict[str, float]


def _hex(text: str) -> str:
    return text.encode("latin-1").hex().upper()


def _lines(codes: Iterable[str], values: Iterable[str]) -> list[str]:
    """`code(value)` lines, a value per code."""
    return [f"{code}({value})" for code, value in zip(codes, values, strict=True)]


_NO_TIME = "632525252525W"  # what meters write where a capture time is not known yet


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
        spec = _SPECS[flavour]
        self.flavour = flavour
        self.crc = spec.crc
        self.interval = interval if interval is not None else spec.interval
        if not MIN_INTERVAL <= self.interval <= MAX_INTERVAL:  # NaN fails this too
            raise ValueError(
                f"interval {self.interval:g} s is not from {MIN_INTERVAL:g} to {MAX_INTERVAL:g} s"
            )
        self.zone = ZoneInfo(spec.zone)
        try:
            self.time = (
                (start or datetime(2024, 6, 1, tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
            )
            year = self.time.astimezone(self.zone).year
        except OverflowError:
            year = 0
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ValueError(
                f"start time {start} is not in {FIRST_YEAR} to {LAST_YEAR}: the meter's clock "
                "writes two-digit years"
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
        self._pv = 1.0 if spec.pv else 0.0
        self._winter: dict[int, timedelta] = {}
        self._layout: Callable[[], str] = getattr(self, "_" + flavour.replace("-", "_"))
        if flavour not in MEASURED_FLAVOURS:
            self._start_model()

    def clock_lasts(self, telegrams: int) -> bool:
        """Whether the meter's clock can stamp `telegrams` more before its years run out."""
        steps = telegrams - 1 if self.count == 0 else telegrams
        try:
            last = self.time + timedelta(seconds=self.interval * steps)
            return last.astimezone(self.zone).year <= LAST_YEAR
        except OverflowError:
            return False

    # -- model ---------------------------------------------------------------------------

    def _local(self, when: datetime) -> tuple[datetime, str]:
        local = when.astimezone(self.zone)
        # Summer time is the year's larger offset: Irish winter time is a negative DST in tzdata.
        winter = self._winter.get(local.year)
        if winter is None:
            offsets = (datetime(local.year, m, 1, tzinfo=self.zone).utcoffset() for m in (1, 7))
            winter = self._winter[local.year] = min(o for o in offsets if o is not None)
        offset = local.utcoffset()
        return local, "S" if offset is not None and offset > winter else "W"

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
        pv_w = 4500.0 * sun * (0.8 + 0.2 * rng.random()) * self._pv
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
        """The next telegram with CRLF line ends, sealed where the flavour seals; time advances
        by one interval."""
        if self.count:
            self.time += timedelta(seconds=self.interval)
        self._advance()
        if self.flavour not in MEASURED_FLAVOURS:
            self._advance_model()
        self.count += 1
        body = self._layout().encode("latin-1")
        if self.crc is None:
            return body + b"\r\n" + self._trailer()
        return seal(body, self.crc)

    # -- the model's further state: reactive quadrants, demand, billing, M-Bus cadences ---

    def _start_model(self) -> None:
        rng = self.rng
        self.began = self.time
        # Registers of their own (the first two start from the seed meter's).
        self.import_wh[:] = [3_051_208.0, 2_277_941.0]
        self.export_wh[:] = [612_337.0, 140_905.0]
        self.gas_m3 = 2873.406
        # Reactive energy per tariff and quadrant (varh): Q1 and Q2 import, Q3 and Q4 export.
        self.quadrants = [[512_903.0, 3_870.0, 10_412.0, 1_204_566.0],
                          [498_115.0, 2_961.0, 9_730.0, 1_187_052.0]]  # fmt: skip
        self.registers = _Registers(self.import_wh, self.export_wh, self.quadrants)
        self.q_factor = 0.12  # reactive power as a share of the load; its sign picks a quadrant
        self.water_m3 = 321.456
        self.mbus = {
            "dsmr22": {"gas": _Mbus(3600, 0)},
            "dsmr3": {"gas": _Mbus(3600, 0)},
            "dsmr4": {"gas": _Mbus(3600, 0)},
            "fluvius": {"gas": _Mbus(300, 2), "water": _Mbus(300, 32)},
            "lux": {"gas": _Mbus(300, 0)},
        }.get(self.flavour, {})
        # Demand: the running quarter-hour, the month's maxima, the months before.
        first = self.time.timestamp() - self.interval / 2
        self._quarter = int(first // QUARTER)
        self._quarter_wh = [0.0, 0.0]
        self._quarter_seconds = 0.0
        self._quarter_tariff = 1
        self._month = self._month_of(first)
        month_start = self._month_start(self._month)
        self.maxima: dict[str, tuple[datetime, float]] = {}
        if self.time - month_start > timedelta(seconds=2 * QUARTER):
            # The month began before the simulation: its peaks so far, at earlier quarters.
            span = int((self.time - month_start).total_seconds()) // QUARTER - 1
            for key in ("import", "export"):
                for tariff in (1, 2):
                    at = month_start + timedelta(seconds=QUARTER * rng.randrange(span))
                    self._peak(f"{key}_t{tariff}", at, rng.uniform(1.0, 5.0))
        # Belgian meters keep the peak of each of the last 13 months, stamped with the start of
        # the month after; a Hungarian billing profile holds the registers at the month's start.
        self.peaks: list[tuple[datetime, datetime | None, float]] = []
        for back in (3, 2, 1):
            month = self._shift(self._month, -back)
            begin, end = self._month_start(month), self._month_start(self._shift(month, 1))
            quarters = int((end - begin).total_seconds()) // QUARTER
            at = begin + timedelta(seconds=QUARTER * rng.randrange(quarters))
            self.peaks.append((end, at, round(rng.uniform(2.0, 6.0), 3)))
        days = (self.time - month_start).total_seconds() / 86400
        previous = {
            f"{key}_t{t}": rng.uniform(1.0, 6.0) for key in ("import", "export") for t in (1, 2)
        }
        for key in ("import", "export"):
            previous[key] = max(previous[f"{key}_t1"], previous[f"{key}_t2"])
        self.profile = _Profile(month_start, self.registers.scaled(1 - 0.002 * days), previous)

    def _advance_model(self) -> None:
        rng = self.rng
        hours = self.interval / 3600
        self.q_factor = min(0.3, max(-0.3, self.q_factor + rng.gauss(0, 0.01)))
        q = sum(p.load_w for p in self.phases) * self.q_factor
        net = self._last["import_w"] - self._last["export_w"]
        quadrant = (0 if q >= 0 else 3) if net >= 0 else (1 if q >= 0 else 2)
        self.quadrants[self._tariff - 1][quadrant] += abs(q) * hours
        self._last["q_var"] = q
        self.water_m3 += rng.random() * 0.012 * hours  # about 150 l a day
        for name, device in self.mbus.items():
            device.capture(self.time, self.gas_m3 if name == "gas" else self.water_m3)
        # This step's energy belongs to the quarter (and month) its middle falls in.
        middle = self.time.timestamp() - self.interval / 2
        quarter = int(middle // QUARTER)
        if quarter != self._quarter:
            self._close_quarter()
            self._quarter, self._quarter_wh, self._quarter_seconds = quarter, [0.0, 0.0], 0.0
            self._quarter_tariff = self._tariff
        self._quarter_wh[0] += self._last["import_w"] * hours
        self._quarter_wh[1] += self._last["export_w"] * hours
        self._quarter_seconds += self.interval
        month = self._month_of(middle)
        if month != self._month:
            self._close_month(month)

    def demand_kw(self) -> float:
        """The running quarter-hour's average import power so far (`1-0:1.4.0`)."""
        return self._quarter_wh[0] * 3.6 / self._quarter_seconds

    def _close_quarter(self) -> None:
        start = datetime.fromtimestamp(self._quarter * QUARTER, UTC)
        for i, key in enumerate(("import", "export")):
            kw = self._quarter_wh[i] * 3.6 / self._quarter_seconds
            self._peak(f"{key}_t{self._quarter_tariff}", start, kw)

    def _peak(self, key: str, at: datetime, kw: float) -> None:
        for name in (key, key.partition("_t")[0]):
            if kw > self.maxima.get(name, (at, -1.0))[1]:
                self.maxima[name] = (at, kw)

    def _close_month(self, month: tuple[int, int]) -> None:
        start = self._month_start(month)
        peak = self.maxima.get("import")
        self.peaks.append((start, *peak) if peak else (start, None, 0.0))
        del self.peaks[:-13]
        maxima = {key: kw for key, (_, kw) in self.maxima.items()}
        self.profile = _Profile(start, self.registers.scaled(1.0), maxima)
        self.maxima = {}
        self._month = month

    def _month_of(self, epoch: float) -> tuple[int, int]:
        local = datetime.fromtimestamp(epoch, UTC).astimezone(self.zone)
        return local.year, local.month

    def _month_start(self, month: tuple[int, int]) -> datetime:
        return datetime(*month, 1, tzinfo=self.zone).astimezone(UTC)

    @staticmethod
    def _shift(month: tuple[int, int], by: int) -> tuple[int, int]:
        index = month[0] * 12 + month[1] - 1 + by
        return index // 12, index % 12 + 1

    def _phase_values(self) -> list[tuple[float, float, float]]:
        """Per phase: volts, active power (W, negative when exporting) and reactive power (var),
        the totals shared as the loads are."""
        total = sum(ph.load_w for ph in self.phases)
        net = self._last["import_w"] - self._last["export_w"]
        q = self._last.get("q_var", 0.0)
        return [(ph.volts, net * ph.load_w / total, q * ph.load_w / total) for ph in self.phases]

    def _amps(self, decimals: int = 0) -> list[float]:
        """Phase currents from the apparent power, truncated as meters do."""
        scale = 10**decimals
        return [
            math.floor(math.hypot(p, q) / volts * scale) / scale
            for volts, p, q in self._phase_values()
        ]

    def _trailer(self) -> bytes:
        """What follows `!` on a checksum-less line: a gateway's two lines after an EasyMeter."""
        if self.flavour != "easymeter":
            return b""
        seconds = 25_800_000 + int(self.count * self.interval)
        return b"  %8d\r\nDE%s\r\n" % (seconds, self.serial.rjust(31, "0").encode())

    # -- layouts -------------------------------------------------------------------------

    @staticmethod
    def _kwh(*wh: float, width: int = 10) -> str:
        """A register in kWh with three decimals; a total is the sum of its parts as written
        (truncated to whole Wh each), as the real meter's 1.8.0 = Σ 1.8.1–1.8.4 is."""
        return f"{sum(int(w) for w in wh) / 1000:0{width}.3f}"

    @staticmethod
    def _kw(w: float, width: int = 6, decimals: int = 3) -> str:
        return f"{w / 1000:0{width}.{decimals}f}"

    def _powers(self, width: int = 6, decimals: int = 3) -> tuple[str, str]:
        """Import and export power (`1-0:1.7.0`, `1-0:2.7.0`) in kW."""
        last = self._last
        return self._kw(last["import_w"], width, decimals), self._kw(
            last["export_w"], width, decimals
        )

    def _phase_powers(self, width: int = 6) -> tuple[list[str], list[str]]:
        """Per-phase import (21/41/61.7.0) and export (22/42/62.7.0) power in kW."""
        net = [p for _, p, _ in self._phase_values()]
        return [self._kw(max(0.0, p), width) for p in net], [
            self._kw(max(0.0, -p), width) for p in net
        ]

    def _phase_reactive(self, width: int = 6) -> tuple[list[str], list[str]]:
        """Per-phase reactive import (23/43/63.7.0) and export (24/44/64.7.0) in kvar."""
        qs = [q for _, _, q in self._phase_values()]
        return [self._kw(max(0.0, q), width) for q in qs], [
            self._kw(max(0.0, -q), width) for q in qs
        ]

    def _reactive_powers(self, width: int = 6) -> tuple[str, str]:
        q = self._last["q_var"]
        return self._kw(max(0.0, q), width), self._kw(max(0.0, -q), width)

    def _volts(self, fmt: str = "05.1f") -> list[str]:
        return [format(ph.volts, fmt) for ph in self.phases]

    def _power_factor(self) -> str:
        net = self._last["import_w"] - self._last["export_w"]
        s = math.hypot(net, self._last["q_var"])
        return f"{abs(net) / s if s else 1.0:.3f}"

    @staticmethod
    def _phases(codes: tuple[int, int, int], values: list[str], unit: str) -> list[str]:
        return _lines((f"1-0:{c}.7.0" for c in codes), (f"{v}*{unit}" for v in values))

    def _tariff_registers(self, width: int = 10) -> list[str]:
        """`1-0:1.8.1` … `1-0:2.8.2`: import and export per tariff, as DSMR writes them."""
        kwh, imp, exp = self._kwh, self.import_wh, self.export_wh
        values = [kwh(imp[0], width=width), kwh(imp[1], width=width)]
        values += [kwh(exp[0], width=width), kwh(exp[1], width=width)]
        codes = ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2")
        return _lines(codes, (f"{v}*kWh" for v in values))

    def _hungarian_registers(self, width: int = 10) -> list[str]:
        """E.ON Hungary's registers: totals beside tariffs 1–4, reactive energy by quadrant, and
        the absolute active energy 15.8.0."""
        kwh, r = self._kwh, self.registers
        lines = []
        for code, parts in ((1, r.imports), (2, r.exports)):
            lines.append(f"1-0:{code}.8.0({kwh(*parts, width=width)}*kWh)")
            lines += [f"1-0:{code}.8.{t + 1}({kwh(parts[t], width=width)}*kWh)" for t in range(2)]
            lines += [f"1-0:{code}.8.{t}({kwh(width=width)}*kWh)" for t in (3, 4)]
        lines.append(f"1-0:3.8.0({kwh(*r.reactive(0), width=width)}*kvarh)")
        lines.append(f"1-0:4.8.0({kwh(*r.reactive(1), width=width)}*kvarh)")
        lines += [f"1-0:{5 + q}.8.0({kwh(*r.quadrant(q), width=width)}*kvarh)" for q in range(4)]
        lines.append(f"1-0:15.8.0({kwh(*r.imports, *r.exports, width=width)}*kWh)")
        return lines

    def _legacy_gas(self) -> list[str]:
        """DSMR 2.2/3 gas: the last hourly value, its time without an S/W flag, on its own line."""
        gas = self.mbus["gas"]
        assert gas.time is not None
        return [
            f"0-1:24.3.0({self._stamp(gas.time)[:12]})(00)(60)(1)(0-1:24.2.1)(m3)",
            f"({gas.value:09.3f})",
        ]

    def _mbus_reading(self, name: str, code: str = "24.2.1", width: int = 9) -> str:
        device = self.mbus[name]
        assert device.time is not None
        channel = 1 + list(self.mbus).index(name)
        return f"0-{channel}:{code}({self._stamp(device.time)})({device.value:0{width}.3f}*m3)"

    def _event_log(self) -> str:
        """Two long power failures, weeks before the simulation began."""
        failures = (
            (self.began - timedelta(days=61, hours=7), 2014),
            (self.began - timedelta(days=17), 311),
        )
        entries = "".join(f"({self._stamp(end)})({seconds:010d}*s)" for end, seconds in failures)
        return f"1-0:99.97.0(2)(0-0:96.7.19){entries}"

    def _dsmr22(self) -> str:
        imp, exp = self._powers(7, 2)
        sn = self.serial
        lines = [
            "/ISk5\\2MT382-1004",
            "",
            f"0-0:96.1.1({_hex(f'ZBEV00{sn}1282')})",
            *self._tariff_registers(9),
            f"0-0:96.14.0({self._tariff:04d})",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            "0-0:17.0.0(0999.00*kW)",
            "0-0:96.3.10(1)",
            "0-0:96.13.1()",
            "0-0:96.13.0()",
            "0-1:24.1.0(3)",
            f"0-1:96.1.0({_hex(f'28010{sn}0613')})",
            *self._legacy_gas(),
            "0-1:24.4.0(1)",
            "!",
        ]
        return "\r\n".join(lines)

    def _dsmr3(self) -> str:
        imp, exp = self._powers(6, 2)
        sn = self.serial
        lines = [
            "/ISk5\\2MT382-1000",
            "",
            f"0-0:96.1.1({_hex(f'K8EG00{sn}3955')})",
            *self._tariff_registers(9),
            f"0-0:96.14.0({self._tariff:04d})",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            "0-0:17.0.0(016*A)",
            "0-0:96.3.10(1)",
            "0-0:96.13.1()",
            "0-0:96.13.0()",
            f"0-1:96.1.0({_hex(f'3232ABCD{sn}89')})",
            "0-1:24.1.0(03)",
            *self._legacy_gas(),
            "0-1:24.4.0(1)",
            "!",
        ]
        return "\r\n".join(lines)

    def _dsmr4(self) -> str:
        imp, exp = self._powers()
        amps = [f"{int(a):03d}" for a in self._amps()]
        up, down = self._phase_powers()
        sn = self.serial
        lines = [
            "/KFM5KAIFA-METER",
            "",
            "1-3:0.2.8(42)",
            f"0-0:1.0.0({self._stamp(self.time)})",
            f"0-0:96.1.1({_hex(f'E0026{sn}1516')})",
            *self._tariff_registers(),
            f"0-0:96.14.0({self._tariff:04d})",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            "0-0:96.7.21(00015)",
            "0-0:96.7.9(00007)",
            self._event_log(),
            *(f"1-0:{c}.32.0(00000)" for c in (32, 52, 72)),
            *(f"1-0:{c}.36.0(00000)" for c in (32, 52, 72)),
            "0-0:96.13.1()",
            "0-0:96.13.0()",
            *self._phases((31, 51, 71), amps, "A"),
            *(
                line
                for c, u, d in zip((21, 41, 61), up, down, strict=True)
                for line in (f"1-0:{c}.7.0({u}*kW)", f"1-0:{c + 1}.7.0({d}*kW)")
            ),
            "0-1:24.1.0(003)",
            f"0-1:96.1.0({_hex(f'G0035{sn}1516')})",
            self._mbus_reading("gas"),
            "!",
        ]
        return "\r\n".join(lines)

    def _fluvius(self) -> str:
        imp, exp = self._powers()
        up, down = self._phase_powers()
        amps = [f"{a:06.2f}" for a in self._amps(2)]
        peak = self.maxima.get("import")
        month = self._stamp(self._month_start(self._month))
        month_peak = (
            f"({self._stamp(peak[0])})({peak[1]:06.3f}*kW)" if peak else f"({month})(00.000*kW)"
        )
        history = "".join(
            f"({self._stamp(start)})({self._stamp(at) if at else _NO_TIME})({kw:06.3f}*kW)"
            for start, at, kw in self.peaks
        )
        sn = self.serial
        lines = [
            "/FLU5\\253769484_A",
            "",
            "0-0:96.1.4(50217)",
            f"0-0:96.1.1({_hex(f'1SAG310{sn}')})",
            f"0-0:1.0.0({self._stamp(self.time)})",
            *self._tariff_registers(),
            f"0-0:96.14.0({self._tariff:04d})",
            f"1-0:1.4.0({self._kw(self.demand_kw() * 1000)}*kW)",
            f"1-0:1.6.0{month_peak}",
            f"0-0:98.1.0({len(self.peaks)})(1-0:1.6.0)(1-0:1.6.0){history}",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            *self._phases((21, 41, 61), up, "kW"),
            *self._phases((22, 42, 62), down, "kW"),
            *self._phases((32, 52, 72), self._volts(), "V"),
            *self._phases((31, 51, 71), amps, "A"),
            "0-0:96.3.10(1)",
            "0-0:17.0.0(999.9*kW)",
            "1-0:31.4.0(999*A)",
            "0-0:96.13.0()",
            "0-1:24.1.0(003)",
            f"0-1:96.1.1({_hex(f'7FLO21{sn}3')})",
            "0-1:24.4.0(1)",
            self._mbus_reading("gas", "24.2.3"),
            "0-2:24.1.0(007)",
            f"0-2:96.1.1({_hex(f'8SAG100{sn}')})",
            self._mbus_reading("water"),
            "!",
        ]
        return "\r\n".join(lines)

    def _lux(self) -> str:
        imp, exp = self._powers()
        q_imp, q_exp = self._reactive_powers()
        up, down = self._phase_powers()
        q_up, q_down = self._phase_reactive()
        net = self._last["import_w"] - self._last["export_w"]
        va = math.hypot(net, self._last["q_var"])
        kwh, r = self._kwh, self.registers
        sn = self.serial
        lines = [
            f"/Lux5\\253{sn}_A",
            "",
            "1-3:0.2.8(42)",
            f"0-0:1.0.0({self._stamp(self.time)})",
            f"0-0:42.0.0({_hex(f'SAG1030{sn}00')})",
            f"1-0:1.8.0({kwh(*r.imports)}*kWh)",
            f"1-0:2.8.0({kwh(*r.exports)}*kWh)",
            f"1-0:3.8.0({kwh(*r.reactive(0))}*kvarh)",
            f"1-0:4.8.0({kwh(*r.reactive(1))}*kvarh)",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            f"1-0:3.7.0({q_imp}*kvar)",
            f"1-0:4.7.0({q_exp}*kvar)",
            "0-0:17.0.0(27.600*kVA)",
            f"1-0:9.7.0({self._kw(va if net >= 0 else 0.0)}*kVA)",
            f"1-0:10.7.0({self._kw(va if net < 0 else 0.0)}*kVA)",
            "0-0:96.3.10(1)",
            "0-0:96.7.21(00004)",
            *(f"1-0:{c}.32.0(00001)" for c in (32, 52, 72)),
            *(f"1-0:{c}.36.0(00000)" for c in (32, 52, 72)),
            "0-0:96.13.0()",
            *(f"0-0:96.13.{n}()" for n in range(2, 6)),
            *self._phases((32, 52, 72), self._volts(), "V"),
            *self._phases((31, 51, 71), [f"{int(a):03d}" for a in self._amps()], "A"),
            *self._phases((21, 41, 61), up, "kW"),
            *self._phases((22, 42, 62), down, "kW"),
            *self._phases((23, 43, 63), q_up, "kvar"),
            *self._phases((24, 44, 64), q_down, "kvar"),
            "0-1:24.1.0(003)",
            f"0-1:96.1.0({_hex(f'FLO1899{sn}0355')})",
            self._mbus_reading("gas"),
            "0-1:24.4.0(1)",
            "!",
        ]
        return "\r\n".join(lines)

    def _se(self) -> str:
        imp, exp = self._powers(8)
        q_imp, q_exp = self._reactive_powers(8)
        up, down = self._phase_powers(8)
        q_up, q_down = self._phase_reactive(8)
        kwh, r = self._kwh, self.registers
        lines = [
            f"/ELL5\\253{self.serial}_A",
            "",
            f"0-0:1.0.0({self._stamp(self.time)})",
            f"1-0:1.8.0({kwh(*r.imports, width=12)}*kWh)",
            f"1-0:2.8.0({kwh(*r.exports, width=12)}*kWh)",
            f"1-0:3.8.0({kwh(*r.reactive(0), width=12)}*kvarh)",
            f"1-0:4.8.0({kwh(*r.reactive(1), width=12)}*kvarh)",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            f"1-0:3.7.0({q_imp}*kvar)",
            f"1-0:4.7.0({q_exp}*kvar)",
            *self._phases((21, 41, 61), up, "kW"),
            *self._phases((22, 42, 62), down, "kW"),
            *self._phases((23, 43, 63), q_up, "kvar"),
            *self._phases((24, 44, 64), q_down, "kvar"),
            *self._phases((32, 52, 72), self._volts(), "V"),
            *self._phases((31, 51, 71), [f"{a:05.1f}" for a in self._amps(1)], "A"),
            "!",
        ]
        return "\r\n".join(lines)

    def _t210dr(self) -> str:
        r, last = self.registers, self._last
        q = last["q_var"]

        def wh(*parts: float) -> str:
            return f"{sum(int(p) for p in parts):09d}"

        lines = [
            f"/EST5\\25{self.serial}_A",
            "",
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({self._stamp(self.time)})",
        ]
        for code, parts, power in (
            (1, r.imports, last["import_w"]),
            (2, r.exports, last["export_w"]),
        ):
            lines.append(f"1-0:{code}.8.0({wh(*parts)}*Wh)")
            lines += [f"1-0:{code}.8.{t + 1}({wh(parts[t])}*Wh)" for t in range(2)]
            lines.append(f"1-0:{code}.7.0({int(power):09d}*W)")
        for code, direction, power in ((3, 0, max(0.0, q)), (4, 1, max(0.0, -q))):
            lines.append(f"1-0:{code}.8.0({wh(*r.reactive(direction))}*varh)")
            lines += [
                f"1-0:{code}.8.{t + 1}({wh(*r.reactive(direction, t))}*varh)" for t in range(2)
            ]
            lines.append(f"1-0:{code}.7.0({int(power):09d}*var)")
        lines.append("!")
        return "\r\n".join(lines)

    def _iskra_ie(self) -> str:
        imp, exp = self._powers()
        up, down = self._phase_powers()
        lines = [
            "/ISk5\\2MIE5T-200",
            "",
            f"1-0:0.0.0({self.serial.rjust(8, '0')})",
            f"0-0:96.1.0({self.serial[-5:].rjust(5, '0')})",
            f"0-0:1.0.0({self._stamp(self.time)})",
            *self._tariff_registers(),
            f"0-0:96.14.0({self._tariff:04d})",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            *self._phases((21, 41, 61), up, "kW"),
            *self._phases((22, 42, 62), down, "kW"),
            *self._phases((32, 52, 72), self._volts(), "V"),
            *self._phases((31, 51, 71), [f"{int(a):03d}" for a in self._amps()], "A"),
            "0-0:96.3.10(1)",
            "0-0:96.13.0()",
            "0-1:96.1.1()",
            "!",
        ]
        return "\r\n".join(lines)

    def _easymeter(self) -> str:
        def kwh(wh: float) -> str:
            return f"{int(wh * 10_000) / 10**7:016.7f}"  # to the 0.1 mWh the Q3D counts in

        r = self.registers
        watts = [f"{max(0.0, p):09.2f}" for _, p, _ in self._phase_values()]
        sn = "0272031" + self.serial[-6:].rjust(6, "0")
        lines = [
            "/ESY5Q3DB1024 V3.04",
            "",
            f"1-0:0.0.0*255({sn})",
            f"1-0:1.8.0*255({kwh(sum(r.imports))}*kWh)",
            f"1-0:2.8.0*255({kwh(sum(r.exports))}*kWh)",
            *_lines((f"1-0:{c}.7.0*255" for c in (21, 41, 61)), (f"{w}*W" for w in watts)),
            f"1-0:1.7.0*255({self._last['import_w']:09.2f}*W)",
            "1-0:96.5.5*255(80)",
            f"0-0:96.1.255*255(1ESY{sn[3:]})",
            "!",
        ]
        return "\r\n".join(lines)

    def _billing(self) -> str:
        """`0-0:98.1.0`, E.ON Hungary's billing profile: the month's start, the registers then,
        the previous month's quarter-hour maxima (import and export, total and per tariff)."""
        kwh, p = self._kwh, self.profile
        r = p.registers
        energy = [
            (r.imports, "kWh"), (r.imports[:1], "kWh"), (r.imports[1:], "kWh"),
            (r.exports, "kWh"), (r.exports[:1], "kWh"), (r.exports[1:], "kWh"),
            (r.reactive(0), "kvarh"), (r.reactive(1), "kvarh"),
            *((r.quadrant(q), "kvarh") for q in range(4)),
            ([*r.imports, *r.exports], "kWh"),
        ]  # fmt: skip
        keys = ("import", "import_t1", "import_t2", "export", "export_t1", "export_t2")
        values = "".join(f"({kwh(*parts)}*{unit})" for parts, unit in energy)
        values += "".join(f"({p.maxima.get(key, 0.0):06.3f}*kW)" for key in keys)
        return f"0-0:98.1.0({self._stamp(p.time)}){values}"

    def _hu_sagemcom(self) -> str:
        imp, exp = self._powers()
        q = self._last["q_var"]
        net = self._last["import_w"] - self._last["export_w"]
        quadrant = (0 if q >= 0 else 3) if net >= 0 else (1 if q >= 0 else 2)
        pf = self._power_factor()
        sn = self.serial
        lines = [
            "/SAG5SAG-METER",
            "",
            f"0-0:1.0.0({self._stamp(self.time)})",
            f"0-0:42.0.0({_hex(f'SAG30822{sn}0')})",
            f"0-0:96.1.0({_hex(f'8900822{sn}0')})",
            f"0-0:96.14.0({self._tariff:04d})",
            "0-0:96.3.10(1)",
            "0-0:17.0.0(90.000*kW)",
            *self._hungarian_registers(),
            *self._phases((32, 52, 72), self._volts(), "V"),
            *self._phases((31, 51, 71), [f"{int(a):03d}" for a in self._amps()], "A"),
            *(f"1-0:{c}.7.0({pf})" for c in (13, 33, 53, 73)),
            f"1-0:14.7.0({50 + self.rng.gauss(0, 0.02):05.2f}*Hz)",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            *(
                f"1-0:{5 + i}.7.0({self._kw(abs(q) if i == quadrant else 0.0)}*kvar)"
                for i in range(4)
            ),
            *(f"1-0:{c}.4.0(200.00*A)" for c in (31, 51, 71)),
            self._billing(),
            "0-0:96.13.0()",
            "!",
        ]
        return "\r\n".join(lines)

    def _holley(self) -> str:
        imp, exp = self._powers()
        pf = self._power_factor()
        lines = [
            "/HLY5\\D545-METER",
            "",
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({self._stamp(self.time)})",
            *self._hungarian_registers(),
            *self._phases((32, 52, 72), self._volts("09.2f"), "V"),
            *self._phases((31, 51, 71), [f"{a:09.2f}" for a in self._amps(2)], "A"),
            *(f"1-0:{c}.7.0({pf})" for c in (13, 33, 53, 73)),
            f"1-0:14.7.0({50 + self.rng.gauss(0, 0.02):05.2f}*Hz)",
            f"1-0:1.7.0({imp}*kW)",
            f"1-0:2.7.0({exp}*kW)",
            "!",
        ]
        return "\r\n".join(lines)

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
