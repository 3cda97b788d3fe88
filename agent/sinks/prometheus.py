"""Prometheus exposition: link health and the latest readings, in base units.

State is kept in plain dicts per meter and turned into metric families at scrape time, so energy
registers can be exposed as counters (`_joules_total`) with the meter's own values.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.diagnose import CAUSES
from agent.fields import FieldValue
from agent.pipeline import Result

KWH_TO_JOULES = 3_600_000.0

# p1 field → (metric name, help, label name, label value, factor to base unit)
_GAUGES: dict[str, tuple[str, str, dict[str, str], float]] = {
    "power_import_kw": ("p1_power_import_watts", "Active power imported", {}, 1000.0),
    "power_export_kw": ("p1_power_export_watts", "Active power exported", {}, 1000.0),
    "frequency_hz": ("p1_frequency_hertz", "Mains frequency", {}, 1.0),
    "power_factor": ("p1_power_factor", "Total power factor", {}, 1.0),
    "power_import_avg_kw": (
        "p1_power_import_average_watts",
        "Import power averaged over the interval from the energy register",
        {},
        1000.0,
    ),
    "demand_import_kw": (
        "p1_demand_import_watts",
        "Average import power of the current quarter hour (Belgian capacity tariff)",
        {},
        1000.0,
    ),
    "demand_import_month_max_kw": (
        "p1_demand_import_month_peak_watts",
        "Highest quarter-hour demand of this month (Belgian capacity tariff)",
        {},
        1000.0,
    ),
    "current_estimated_total_a": (
        "p1_current_estimated_amperes",
        "Total current estimated from power and voltage",
        {},
        1.0,
    ),
}
for _p in ("l1", "l2", "l3"):
    _GAUGES[f"voltage_{_p}_v"] = ("p1_voltage_volts", "Phase voltage", {"phase": _p}, 1.0)
    _GAUGES[f"current_{_p}_a"] = (
        "p1_current_amperes",
        "Phase current (truncated by the meter)",
        {"phase": _p},
        1.0,
    )
    _GAUGES[f"power_import_{_p}_kw"] = (
        "p1_phase_power_import_watts",
        "Active power imported per phase",
        {"phase": _p},
        1000.0,
    )
    _GAUGES[f"power_export_{_p}_kw"] = (
        "p1_phase_power_export_watts",
        "Active power exported per phase",
        {"phase": _p},
        1000.0,
    )
    _GAUGES[f"current_limit_{_p}_a"] = (
        "p1_current_limit_amperes",
        "Current limit the meter reports per phase",
        {"phase": _p},
        1.0,
    )
    _GAUGES[f"power_factor_{_p}"] = (
        "p1_phase_power_factor",
        "Power factor per phase",
        {"phase": _p},
        1.0,
    )

_COUNTERS: dict[str, tuple[str, str, dict[str, str], float]] = {
    "energy_import_kwh": (
        "p1_energy_import_joules",
        "Imported active energy register",
        {"tariff": "total"},
        KWH_TO_JOULES,
    ),
    "energy_export_kwh": (
        "p1_energy_export_joules",
        "Exported active energy register",
        {"tariff": "total"},
        KWH_TO_JOULES,
    ),
}
_COUNTERS["power_failures"] = ("p1_power_failures", "Power failures in any phase", {}, 1.0)
_COUNTERS["power_failures_long"] = (
    "p1_long_power_failures",
    "Long power failures in any phase",
    {},
    1.0,
)
for _p in ("l1", "l2", "l3"):
    _COUNTERS[f"voltage_sags_{_p}"] = (
        "p1_voltage_sags",
        "Voltage sags counted by the meter",
        {"phase": _p},
        1.0,
    )
    _COUNTERS[f"voltage_swells_{_p}"] = (
        "p1_voltage_swells",
        "Voltage swells counted by the meter",
        {"phase": _p},
        1.0,
    )
for _t in range(1, 5):
    _COUNTERS[f"energy_import_t{_t}_kwh"] = (
        "p1_energy_import_joules",
        "Imported active energy register",
        {"tariff": str(_t)},
        KWH_TO_JOULES,
    )
    _COUNTERS[f"energy_export_t{_t}_kwh"] = (
        "p1_energy_export_joules",
        "Exported active energy register",
        {"tariff": str(_t)},
        KWH_TO_JOULES,
    )


@dataclass
class MeterState:
    telegrams: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    corrected: Counter[str] = field(default_factory=Counter)
    line_errors: Counter[str] = field(default_factory=Counter)  # repaired bytes by telegram line
    crc_failures: int = 0
    last_telegram: float | None = None
    fields: dict[str, FieldValue] = field(default_factory=dict)
    connected: bool = False
    reconnects: int = 0
    bytes_total: int = 0
    clock_skew: float | None = None  # meter clock minus host clock, at arrival
    interval: float | None = None  # host time between the last two accepted telegrams
    spool_points: int = 0
    spool_oldest_age: float = 0.0
    spool_evicted: Counter[str] = field(default_factory=Counter)  # by reason: size, age
    spool_errors: int = 0  # telegrams whose commit to the spool failed (disk full, I/O error)
    spool_dropped: int = 0  # telegrams given up after the spool stayed unwritable
    influx_written: int = 0
    influx_errors: Counter[str] = field(default_factory=Counter)  # failed writes by kind
    influx_refused: int = 0  # points the server refused for good, set aside in the spool
    gas_m3: float | None = None
    diagnosis: str | None = None  # the link diagnosis' cause, once it has one


_Value = float | None | Mapping[str, float]


@dataclass(frozen=True, slots=True)
class _LinkMetric:
    name: str
    doc: str
    counter: bool
    value: Callable[[MeterState], _Value]  # a mapping: one sample per value of `label`
    label: str | None = None


_LINK = [
    _LinkMetric(
        "p1_telegrams",
        "Frames by result",
        True,
        lambda s: {r: s.telegrams[r] for r in ("valid", "repaired", "rejected")},
        "result",
    ),
    _LinkMetric(
        "p1_crc_failures", "Frames whose checksum failed on arrival", True, lambda s: s.crc_failures
    ),
    _LinkMetric(
        "p1_corrected_frames", "Frames repaired, by method", True, lambda s: s.corrected, "method"
    ),
    _LinkMetric(
        "p1_rejected_frames", "Frames rejected, by reason", True, lambda s: s.rejections, "reason"
    ),
    _LinkMetric(
        "p1_line_errors",
        "Damaged stretches found in repaired frames, by telegram line",
        True,
        lambda s: s.line_errors,
        "line",
    ),
    _LinkMetric(
        "p1_last_telegram_timestamp_seconds",
        "Host time of the last accepted telegram",
        False,
        lambda s: s.last_telegram,
    ),
    _LinkMetric(
        "p1_source_connected",
        "1 while the source is connected",
        False,
        lambda s: 1.0 if s.connected else 0.0,
    ),
    _LinkMetric("p1_source_reconnects", "Source reconnections", True, lambda s: s.reconnects),
    _LinkMetric(
        "p1_link_diagnosis",
        "What the link's bytes and frames point at: 1 for the current cause, 0 for the others",
        False,
        lambda s: {c: float(c == s.diagnosis) for c in CAUSES} if s.diagnosis else None,
        "cause",
    ),
    _LinkMetric("p1_source_bytes", "Bytes read from the source", True, lambda s: s.bytes_total),
    _LinkMetric(
        "p1_meter_clock_skew_seconds",
        "Meter clock minus host clock when the last telegram arrived",
        False,
        lambda s: s.clock_skew,
    ),
    _LinkMetric(
        "p1_telegram_interval_seconds",
        "Host time between the last two accepted telegrams",
        False,
        lambda s: s.interval,
    ),
    _LinkMetric(
        "p1_spool_points", "Points in the local store or spool", False, lambda s: s.spool_points
    ),
    _LinkMetric(
        "p1_spool_oldest_age_seconds",
        "Age of the oldest point waiting in the spool (0 when empty)",
        False,
        lambda s: s.spool_oldest_age,
    ),
    _LinkMetric(
        "p1_spool_evicted_points",
        "Points dropped from the spool by its size or age bound, oldest first",
        True,
        lambda s: {r: s.spool_evicted[r] for r in ("size", "age")},
        "reason",
    ),
    _LinkMetric(
        "p1_spool_write_errors",
        "Failed attempts to commit telegrams to the spool (disk full, I/O error); they are "
        "held in memory and retried",
        True,
        lambda s: s.spool_errors,
    ),
    _LinkMetric(
        "p1_spool_dropped_telegrams",
        "Telegrams given up because the spool stayed unwritable",
        True,
        lambda s: s.spool_dropped,
    ),
    _LinkMetric(
        "p1_influx_points_written",
        "Points acknowledged by InfluxDB",
        True,
        lambda s: s.influx_written,
    ),
    _LinkMetric(
        "p1_influx_write_errors",
        "Failed InfluxDB writes that held this meter's points, by kind",
        True,
        lambda s: s.influx_errors,
        "kind",
    ),
    _LinkMetric(
        "p1_influx_refused_points",
        "Points InfluxDB refused for good (kept aside in the spool's rejected_points)",
        True,
        lambda s: s.influx_refused,
    ),
]


class Metrics(Collector):
    """Thread-safe holder of everything /metrics shows."""

    def __init__(self, fuse_limit: float | None = None) -> None:
        self.fuse_limit = fuse_limit  # amperes per phase, from the configuration
        self._lock = threading.Lock()
        self.meters: dict[str, MeterState] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def meter(self, name: str) -> MeterState:
        with self._lock:
            state = self.meters.get(name)
            if state is None:
                state = self.meters[name] = MeterState()
            return state

    def rename(self, old: str, new: str) -> MeterState:
        """The source learned its meter's name: a placeholder that counted nothing goes."""
        with self._lock:
            state = self.meters.get(old)
            if state is not None and not state.telegrams:
                del self.meters[old]
        return self.meter(new)

    def observe(
        self, meter: str, result: Result, now: float, meter_time: float | None = None
    ) -> None:
        state = self.meter(meter)
        with self._lock:
            state.telegrams[result.status] += 1
            if result.failure is not None:
                state.crc_failures += 1
            if result.reason:
                state.rejections[result.reason] += 1
            if result.repair is not None:
                state.corrected[str(result.repair.get("method", "unknown"))] += 1
                changes = result.repair.get("changes")
                if isinstance(changes, list):
                    for change in changes:
                        state.line_errors[str(change.get("line", "unknown"))] += 1
            if result.accepted:
                if state.last_telegram is not None:
                    state.interval = now - state.last_telegram
                if meter_time is not None:
                    state.clock_skew = meter_time - now
                state.last_telegram = now
                state.fields = result.fields
                if result.telegram is not None:
                    for device in result.telegram.mbus:
                        reading = device.reading
                        if (
                            device.kind == "gas"
                            and reading is not None
                            and isinstance(reading.value, float)
                        ):
                            state.gas_m3 = reading.value

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            meters = dict(self.meters)
            yield from self._link(meters)
            yield from self._readings(meters)

    def _link(self, meters: dict[str, MeterState]) -> Iterator[Metric]:
        for spec in _LINK:
            family_type = CounterMetricFamily if spec.counter else GaugeMetricFamily
            labels = ["meter", spec.label] if spec.label else ["meter"]
            family = family_type(spec.name, spec.doc, labels=labels)
            for name, state in meters.items():
                value = spec.value(state)
                if isinstance(value, Mapping):
                    for label, n in value.items():
                        family.add_metric([name, label], n)
                elif value is not None:
                    family.add_metric([name], value)
            yield family

    def _readings(self, meters: dict[str, MeterState]) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for table, family_type in ((_GAUGES, GaugeMetricFamily), (_COUNTERS, CounterMetricFamily)):
            for field_name, (metric, doc, labels, factor) in table.items():
                for meter, s in meters.items():
                    value = s.fields.get(field_name)
                    if not isinstance(value, float):
                        continue
                    family = families.get(metric)
                    if family is None:
                        family = families[metric] = family_type(
                            metric, doc, labels=["meter", *labels]
                        )
                    family.add_metric([meter, *labels.values()], value * factor)  # type: ignore[attr-defined]
        if self.fuse_limit is not None:
            fuse = GaugeMetricFamily(
                "p1_fuse_limit_amperes",
                "Main fuse rating per phase, as configured (fuse_limit)",
                labels=["meter"],
            )
            for meter in meters:
                fuse.add_metric([meter], self.fuse_limit)
            yield fuse
        gas = CounterMetricFamily("p1_gas_cubic_meters", "Gas meter register", labels=["meter"])
        for meter, s in meters.items():
            if s.gas_m3 is not None:
                gas.add_metric([meter], s.gas_m3)
        yield from families.values()
        yield gas


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not worth a log line each."""


def serve(metrics: Metrics, host: str, port: int, healthy: object) -> WSGIServer:
    """Serve /metrics and /healthz in a daemon thread; returns the server (for shutdown)."""
    prom_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, object], start_response: object) -> list[bytes] | object:
        if environ.get("PATH_INFO") == "/healthz":
            ok = bool(callable(healthy) and healthy())
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )  # type: ignore[operator]
            return [b"ok\n" if ok else b"unhealthy\n"]
        result: list[bytes] = prom_app(environ, start_response)
        return result

    server = make_server(host, port, app, handler_class=_QuietHandler)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
