"""Prometheus exposition: link health and the latest readings, in base units.

State is kept in plain dicts per meter and turned into metric families at scrape time, so energy
registers can be exposed as counters (`_joules_total`) with the meter's own values.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from agent.diagnose import CAUSES
from agent.fields import FieldValue
from agent.pipeline import Result

log = structlog.get_logger("p1-agent.metrics")

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


# A source whose telegrams carry ever new equipment identifiers (noise forging them, a bridge
# mixing garbage) must not grow the agent's state and every scrape without end: a source has at
# most MAX_METERS meters in /metrics, and one silent for METER_EXPIRY seconds leaves it.
MAX_METERS = 16
METER_EXPIRY = 3600.0
# Meters refused lately, so a meter over the cap is counted once rather than per telegram.
REFUSED_MEMORY = 1024
DROP_REASONS = ("cap", "expired")


@dataclass
class _SourceMeters:
    """The meters one source's telegrams named."""

    seen: dict[str, float] = field(default_factory=dict)  # meter → last telegram, oldest first
    refused: dict[str, None] = field(default_factory=dict)  # over the cap lately, oldest first
    dropped: Counter[str] = field(default_factory=Counter)  # meters by reason (DROP_REASONS)


class Metrics(Collector):
    """Thread-safe holder of everything /metrics shows."""

    def __init__(
        self,
        fuse_limit: float | None = None,
        *,
        max_meters: int = MAX_METERS,
        meter_expiry: float = METER_EXPIRY,
    ) -> None:
        self.fuse_limit = fuse_limit  # amperes per phase, from the configuration
        self.max_meters = max_meters  # per source
        self.meter_expiry = meter_expiry  # seconds, on the clock admit() and expire() are given
        self._lock = threading.Lock()
        self.meters: dict[str, MeterState] = {}
        self._sources: dict[str, _SourceMeters] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def add_source(self, source: str) -> None:
        """A source whose meters are bounded; its p1_meters_dropped_total shows from 0."""
        with self._lock:
            self._sources.setdefault(source, _SourceMeters())

    def admit(self, source: str, meter: str, now: float) -> bool:
        """A telegram of `meter` arrived on `source` at `now`: whether the meter has state and
        series here. One beyond the source's max_meters has none (its readings are stored all
        the same) and is counted as dropped (cap), once while among the last REFUSED_MEMORY."""
        with self._lock:
            table = self._sources.setdefault(source, _SourceMeters())
            seen = table.seen
            if meter in seen or len(seen) < self.max_meters:
                seen.pop(meter, None)  # to the end: the most recently seen
                seen[meter] = now
                table.refused.pop(meter, None)
                return True
            counted = meter not in table.refused
            if counted:
                table.dropped["cap"] += 1
                table.refused[meter] = None
                if len(table.refused) > REFUSED_MEMORY:
                    del table.refused[next(iter(table.refused))]
        if counted:
            log.warning(
                "a source names more meters than max_meters: their readings are stored, but "
                "have no metrics",
                source=source,
                meter=meter,
                max_meters=self.max_meters,
            )
        return False

    def expire(self, source: str, now: float, keep: str) -> list[str]:
        """Forget the meters of `source` whose last telegram is meter_expiry or more before
        `now`, with their series; never `keep`, the meter the source's link metrics are on, so
        a source gone quiet keeps its series and its alert for missing telegrams."""
        with self._lock:
            table = self._sources.get(source)
            if table is None:
                return []
            gone = []
            for meter, last in table.seen.items():  # oldest first: stop at the first recent one
                if now - last < self.meter_expiry:
                    break
                if meter != keep:
                    gone.append(meter)
            for meter in gone:
                del table.seen[meter]
                table.dropped["expired"] += 1
                if not any(meter in other.seen for other in self._sources.values()):
                    self.meters.pop(meter, None)
        for meter in gone:
            log.info("meter silent; its metrics removed", source=source, meter=meter)
        return gone

    def known(self, name: str) -> MeterState | None:
        """The meter's state if it has one; never made here, so the readers' bound holds."""
        with self._lock:
            return self.meters.get(name)

    def states(self) -> list[tuple[str, MeterState]]:
        with self._lock:
            return list(self.meters.items())

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
                state.corrected[result.repair.method] += 1
                for change in result.repair.changes:
                    state.line_errors[change.line] += 1
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
            yield self._dropped()

    def _dropped(self) -> Metric:
        family = CounterMetricFamily(
            "p1_meters_dropped",
            "Meters given no metrics: beyond the source's max_meters (cap; their readings are "
            "still stored), or removed after meter_expiry without a telegram (expired)",
            labels=["source", "reason"],
        )
        for source, table in self._sources.items():
            for reason in DROP_REASONS:
                family.add_metric([source, reason], table.dropped[reason])
        return family

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


@dataclass(frozen=True, slots=True)
class Health:
    """What /healthz says. `dead`: what only a restart mends (liveness, /healthz/live);
    `degraded`: trouble outside the process (a source gone, InfluxDB refusing) that a restart
    would not mend. Each is one line for people."""

    dead: tuple[str, ...] = ()
    degraded: tuple[str, ...] = ()


# One connection's socket reads and writes each wait at most this long: an idle or half-open
# client (one `nc` on the LAN) is dropped instead of holding a handler for good.
CONNECTION_TIMEOUT = 10.0
# Connections served at once; more are closed at once, so a flood cannot start threads
# without bound. Prometheus and a health check need one each.
MAX_CONNECTIONS = 128


def url_host(host: str) -> str:
    """`host` as written in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not hold up the agent's exit
    block_on_close = False

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((str(address[0]), int(address[1])), handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # `[::]` means every interface, IPv4 clients included, whatever the system default.
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning(
                "metrics server busy: closing a new connection", connections=MAX_CONNECTIONS
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # a client that went away or stalled: nothing to report
        log.error("metrics request failed", error=repr(error), exc_info=True)


class _Handler(MetricsHandler):
    timeout = CONNECTION_TIMEOUT
    health: Callable[[], Health]

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            super().do_GET()
        elif path in ("/healthz", "/healthz/live"):
            health = type(self).health()
            trouble = health.dead if path == "/healthz/live" else health.dead + health.degraded
            if not trouble:
                self._answer(200, "ok\n")
            else:
                state = "unhealthy" if health.dead else "degraded"
                self._answer(503, "".join(f"{line}\n" for line in (state, *trouble)))
        else:
            self._answer(404, "not found: /metrics, /healthz, /healthz/live\n")

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(metrics: Metrics, host: str, port: int, health: Callable[[], Health]) -> HTTPServer:
    """Serve /metrics, /healthz and /healthz/live in a daemon thread, each connection in its own
    thread with timeouts; returns the server (for shutdown)."""
    handler = type("Handler", (_Handler,), {"registry": metrics.registry, "health": health})
    server = _MetricsServer(host, port, handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
