"""Prometheus exposition: link health and the latest readings, in base units.

One collector, `Metrics`, answers a scrape the way prometheus_client's ProcessCollector reads
/proc when asked. What the readers count as a meter's frames arrive (results, repairs, the
latest readings, the meter's clock, failed spool commits) it keeps in that meter's MeterState.
What other parts of the agent own it asks them at scrape time (`read_from`): the sources
(connected, reconnects, bytes, the link diagnosis) through their readers, the spool (points,
oldest age, evictions) and the deliverer (points written, failed writes, refused points).
Nothing is copied in between. Energy registers are exposed as counters (`_joules_total`) with
the meter's own values.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.core.diagnose import CAUSES
from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.sinks.influx import KINDS
from agent.sinks.spool import SpoolError

if TYPE_CHECKING:
    from agent.deliver import DeliveryStats
    from agent.sinks.mqtt import MqttSink
    from agent.sinks.spool import Spool

log = structlog.get_logger("p1-agent.metrics")

KWH_TO_JOULES = 3_600_000.0
_W = 1000.0  # kW to W

# The readings: p1 field (a pattern over the phases or tariffs), metric, factor to base unit,
# and below them the metric's help.
_GAUGES = [
    ("power_import_kw", "p1_power_import_watts", _W,
     "Active power imported"),
    ("power_export_kw", "p1_power_export_watts", _W,
     "Active power exported"),
    ("frequency_hz", "p1_frequency_hertz", 1.0,
     "Mains frequency"),
    ("power_factor", "p1_power_factor", 1.0,
     "Total power factor"),
    ("power_import_avg_kw", "p1_power_import_average_watts", _W,
     "Import power averaged over the interval from the energy register"),
    ("demand_import_kw", "p1_demand_import_watts", _W,
     "Average import power of the current quarter hour (Belgian capacity tariff)"),
    ("demand_import_month_max_kw", "p1_demand_import_month_peak_watts", _W,
     "Highest quarter-hour demand of this month (Belgian capacity tariff)"),
    ("current_estimated_total_a", "p1_current_estimated_amperes", 1.0,
     "Total current estimated from power and voltage"),
    ("voltage_{phase}_v", "p1_voltage_volts", 1.0,
     "Phase voltage"),
    ("current_{phase}_a", "p1_current_amperes", 1.0,
     "Phase current (truncated by the meter)"),
    ("power_import_{phase}_kw", "p1_phase_power_import_watts", _W,
     "Active power imported per phase"),
    ("power_export_{phase}_kw", "p1_phase_power_export_watts", _W,
     "Active power exported per phase"),
    ("current_limit_{phase}_a", "p1_current_limit_amperes", 1.0,
     "Current limit the meter reports per phase"),
    ("power_factor_{phase}", "p1_phase_power_factor", 1.0,
     "Power factor per phase"),
]  # fmt: skip
_COUNTERS = [
    ("energy_import{tariff}_kwh", "p1_energy_import_joules", KWH_TO_JOULES,
     "Imported active energy register"),
    ("energy_export{tariff}_kwh", "p1_energy_export_joules", KWH_TO_JOULES,
     "Exported active energy register"),
    ("power_failures", "p1_power_failures", 1.0,
     "Power failures in any phase"),
    ("power_failures_long", "p1_long_power_failures", 1.0,
     "Long power failures in any phase"),
    ("voltage_sags_{phase}", "p1_voltage_sags", 1.0,
     "Voltage sags counted by the meter"),
    ("voltage_swells_{phase}", "p1_voltage_swells", 1.0,
     "Voltage swells counted by the meter"),
]  # fmt: skip
# A pattern's label: its values, each with what it puts in the field's name.
_LABELS = {
    "phase": {p: p for p in ("l1", "l2", "l3")},
    "tariff": {"total": "", **{str(t): f"_t{t}" for t in range(1, 5)}},
}


class _Reading(NamedTuple):
    field: str
    metric: str
    factor: float
    doc: str
    counter: bool
    labels: tuple[tuple[str, str], ...]  # (name, value): the label beside `meter`, if any

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        return kind(self.metric, self.doc, labels=["meter", *(name for name, _ in self.labels)])


def _readings() -> Iterator[_Reading]:
    for table, counter in ((_GAUGES, False), (_COUNTERS, True)):
        for pattern, metric, factor, doc in table:
            label = next((name for name in _LABELS if f"{{{name}}}" in pattern), None)
            if label is None:
                yield _Reading(pattern, metric, factor, doc, counter, ())
                continue
            for value, part in _LABELS[label].items():
                name = pattern.format(**{label: part})
                yield _Reading(name, metric, factor, doc, counter, ((label, value),))


_READINGS = list(_readings())


class Link(NamedTuple):
    """A source's link as the metrics show it, on the meter its reader labels."""

    connected: bool = False
    reconnects: int = 0
    bytes_total: int = 0
    diagnosis: str | None = None  # the link diagnosis' cause, once it has one


@dataclass
class MeterState:
    """What the readers count of one meter as its frames arrive."""

    telegrams: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    corrected: Counter[str] = field(default_factory=Counter)
    line_errors: Counter[str] = field(default_factory=Counter)  # repaired bytes by telegram line
    crc_failures: int = 0
    last_telegram: float | None = None
    fields: dict[str, FieldValue] = field(default_factory=dict)
    clock_skew: float | None = None  # meter clock minus host clock, at arrival
    interval: float | None = None  # host time between the last two accepted telegrams
    gas_m3: float | None = None
    spool_errors: int = 0  # telegrams whose commit to the spool failed (disk full, I/O error)
    spool_dropped: int = 0  # telegrams given up after the spool stayed unwritable
    # The link as the last reader on this meter left it (the source's telegrams named another
    # meter, or the reader stopped), shown while no reader labels the meter: a reader that does
    # is asked at scrape time.
    connected: bool = False
    reconnects: int = 0
    bytes_total: int = 0
    diagnosis: str | None = None

    def link(self) -> Link:
        return Link(self.connected, self.reconnects, self.bytes_total, self.diagnosis)


@dataclass(frozen=True, slots=True)
class _Owners:
    """Where a scrape asks for the state other parts of the agent own."""

    links: Callable[[], Mapping[str, Link]]  # meter → the link of the reader labelling it now
    spool: Spool
    delivery: DeliveryStats | None  # None without an InfluxDB
    mqtt: MqttSink | None = None  # None without an MQTT broker


class _Meter(NamedTuple):
    """One meter at one scrape: what its reader counted and what its owners say now."""

    state: MeterState
    link: Link
    spool_points: int | None
    spool_oldest_age: float | None
    spool_evicted: Mapping[str, int]
    influx_written: int
    influx_errors: Mapping[str, int]
    influx_refused: int


class _Delivered(NamedTuple):
    """The deliverer's counts by meter at one scrape."""

    written: Mapping[str, int]
    failures: Mapping[tuple[str, str], int]  # failed requests by (meter, kind)
    refused: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class _Answers:
    """What the owners said at one scrape; the defaults are those of an agent that has none."""

    links: Mapping[str, Link] = field(default_factory=dict)
    depth: Mapping[str, int] | None = field(default_factory=dict)  # None: the spool failed
    oldest_age: Mapping[str, float] = field(default_factory=dict)
    evicted: Mapping[tuple[str, str], int] = field(default_factory=dict)  # by (meter, reason)
    delivered: _Delivered | None = None  # None: no deliverer (no InfluxDB)

    def of(self, name: str, state: MeterState) -> _Meter:
        link = self.links.get(name)
        delivered = self.delivered or _Delivered({}, {}, {})
        return _Meter(
            state,
            state.link() if link is None else link,
            None if self.depth is None else self.depth.get(name, 0),
            None if self.depth is None else self.oldest_age.get(name, 0.0),
            {reason: self.evicted.get((name, reason), 0) for reason in ("size", "age")},
            delivered.written.get(name, 0),
            # Every kind from 0 once there is a deliverer, so increase() sees the first failure.
            {kind: delivered.failures.get((name, kind), 0) for kind in KINDS}
            if self.delivered is not None
            else {},
            delivered.refused.get(name, 0),
        )


_Value = float | None | Mapping[str, float]


@dataclass(frozen=True, slots=True)
class _LinkMetric:
    name: str
    doc: str
    counter: bool
    value: Callable[[_Meter], _Value]  # a mapping: one sample per value of `label`
    label: str | None = None


_LINK = [
    _LinkMetric(
        "p1_telegrams",
        "Frames by result",
        True,
        lambda m: {r: m.state.telegrams[r] for r in ("valid", "repaired", "rejected")},
        "result",
    ),
    _LinkMetric(
        "p1_crc_failures",
        "Frames whose checksum failed on arrival",
        True,
        lambda m: m.state.crc_failures,
    ),
    _LinkMetric(
        "p1_corrected_frames",
        "Frames repaired, by method",
        True,
        lambda m: m.state.corrected,
        "method",
    ),
    _LinkMetric(
        "p1_rejected_frames",
        "Frames rejected, by reason",
        True,
        lambda m: m.state.rejections,
        "reason",
    ),
    _LinkMetric(
        "p1_line_errors",
        "Damaged stretches found in repaired frames, by telegram line",
        True,
        lambda m: m.state.line_errors,
        "line",
    ),
    _LinkMetric(
        "p1_last_telegram_timestamp_seconds",
        "Host time of the last accepted telegram",
        False,
        lambda m: m.state.last_telegram,
    ),
    _LinkMetric(
        "p1_source_connected",
        "1 while the source is connected",
        False,
        lambda m: 1.0 if m.link.connected else 0.0,
    ),
    _LinkMetric("p1_source_reconnects", "Source reconnections", True, lambda m: m.link.reconnects),
    _LinkMetric(
        "p1_link_diagnosis",
        "What the link's bytes and frames point at: 1 for the current cause, 0 for the others",
        False,
        lambda m: {c: float(c == m.link.diagnosis) for c in CAUSES} if m.link.diagnosis else None,
        "cause",
    ),
    _LinkMetric(
        "p1_source_bytes", "Bytes read from the source", True, lambda m: m.link.bytes_total
    ),
    _LinkMetric(
        "p1_meter_clock_skew_seconds",
        "Meter clock minus host clock when the last telegram arrived",
        False,
        lambda m: m.state.clock_skew,
    ),
    _LinkMetric(
        "p1_telegram_interval_seconds",
        "Host time between the last two accepted telegrams",
        False,
        lambda m: m.state.interval,
    ),
    _LinkMetric(
        "p1_spool_points", "Points in the local store or spool", False, lambda m: m.spool_points
    ),
    _LinkMetric(
        "p1_spool_oldest_age_seconds",
        "Age of the oldest point waiting in the spool (0 when empty)",
        False,
        lambda m: m.spool_oldest_age,
    ),
    _LinkMetric(
        "p1_spool_evicted_points",
        "Points dropped from the spool by its size or age bound, oldest first",
        True,
        lambda m: m.spool_evicted,
        "reason",
    ),
    _LinkMetric(
        "p1_spool_write_errors",
        "Failed attempts to commit telegrams to the spool (disk full, I/O error); they are "
        "held in memory and retried",
        True,
        lambda m: m.state.spool_errors,
    ),
    _LinkMetric(
        "p1_spool_dropped_telegrams",
        "Telegrams given up because the spool stayed unwritable",
        True,
        lambda m: m.state.spool_dropped,
    ),
    _LinkMetric(
        "p1_influx_points_written",
        "Points acknowledged by InfluxDB",
        True,
        lambda m: m.influx_written,
    ),
    _LinkMetric(
        "p1_influx_write_errors",
        "Failed InfluxDB writes that held this meter's points, by kind",
        True,
        lambda m: m.influx_errors,
        "kind",
    ),
    _LinkMetric(
        "p1_influx_refused_points",
        "Points InfluxDB refused for good (kept aside in the spool's rejected_points)",
        True,
        lambda m: m.influx_refused,
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
    """Thread-safe holder of everything /metrics shows: what the readers count, kept here, and
    what the owners given to read_from() say at each scrape."""

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
        self._owners: _Owners | None = None  # None: every owner's figures at their defaults
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def read_from(
        self,
        links: Callable[[], Mapping[str, Link]],
        spool: Spool,
        delivery: DeliveryStats | None = None,
        mqtt: MqttSink | None = None,
    ) -> None:
        """Ask these at every scrape: `links` for the links of the readers, by the meter each
        labels; the spool; the deliverer's counts (None without an InfluxDB); the MQTT sink's
        (None without a broker). The spool, the deliverer and the MQTT sink count by meter only
        the meters with metrics from now on, and forget a meter that leaves them."""
        self._owners = _Owners(links, spool, delivery, mqtt)
        for owner in (spool, delivery, mqtt):
            if owner is not None:
                owner.count_only(self.tracks)

    def tracks(self, name: str) -> bool:
        """Whether the meter has metrics. Without the lock (one dict lookup), as the spool and
        the deliverer ask it for their counts by meter while holding their own locks."""
        return name in self.meters

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
            removed = []
            for meter in gone:
                del table.seen[meter]
                table.dropped["expired"] += 1
                if not any(meter in other.seen for other in self._sources.values()):
                    self.meters.pop(meter, None)
                    removed.append(meter)
        self._forget(removed)
        for meter in gone:
            log.info("meter silent; its metrics removed", source=source, meter=meter)
        return gone

    def _forget(self, meters: list[str]) -> None:
        """Meters that left the metrics: the owners' counts of them go too."""
        owners = self._owners
        if meters and owners is not None:
            owners.spool.forget(meters)
            if owners.delivery is not None:
                owners.delivery.forget(meters)
            if owners.mqtt is not None:
                owners.mqtt.forget(meters)

    def known(self, name: str) -> MeterState | None:
        """The meter's state if it has one; never made here, so the readers' bound holds."""
        with self._lock:
            return self.meters.get(name)

    def meter(self, name: str) -> MeterState:
        with self._lock:
            state = self.meters.get(name)
            if state is None:
                state = self.meters[name] = MeterState()
            return state

    def leave(self, name: str, link: Link) -> None:
        """A reader leaves the meter (its source's telegrams name another, or it stopped): the
        meter keeps its link as it was, disconnected."""
        with self._lock:
            state = self.meters.get(name)
            if state is not None:
                state.connected = False
                _, state.reconnects, state.bytes_total, state.diagnosis = link

    def rename(self, old: str, new: str, link: Link) -> MeterState:
        """The source learned its meter's name: a placeholder that counted nothing goes."""
        self.leave(old, link)
        with self._lock:
            state = self.meters.get(old)
            if state is not None and not state.telegrams:
                del self.meters[old]
        return self.meter(new)

    def observe(
        self, meter: str, result: Result, now: float, meter_time: float | None = None
    ) -> None:
        state = self.meter(meter)
        gas = _gas(result)
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
                if gas is not None:
                    state.gas_m3 = gas

    def collect(self) -> Iterator[Metric]:
        answers = self._ask()  # first, outside the lock: the owners take their own
        with self._lock:
            meters = [(name, answers.of(name, state)) for name, state in self.meters.items()]
            yield from self._link(meters)
            yield from self._readings(meters)
            yield self._dropped()
        if self._owners is not None and self._owners.mqtt is not None:
            yield from _mqtt(self._owners.mqtt)

    def _ask(self) -> _Answers:
        owners = self._owners
        if owners is None:
            return _Answers()
        links = owners.links()
        # The spool before the deliverer, which counts points written before the spool lets
        # them go: a scrape never shows points that left the spool as not yet written.
        try:
            spool = owners.spool.stats(time.time())
            depth: Mapping[str, int] | None = spool.depth_by_meter
            oldest = spool.oldest_age_by_meter
        except SpoolError as exc:
            log.error("cannot read the spool for the metrics", error=str(exc))
            depth, oldest = None, {}
        evicted = owners.spool.evictions()
        stats = owners.delivery
        if stats is None:
            return _Answers(links, depth, oldest, evicted)
        with stats.lock:  # of the meters with metrics only: bounded
            delivered = _Delivered(
                dict(stats.written), dict(stats.failures), dict(stats.dead_lettered)
            )
        return _Answers(links, depth, oldest, evicted, delivered)

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

    def _link(self, meters: list[tuple[str, _Meter]]) -> Iterator[Metric]:
        for spec in _LINK:
            family_type = CounterMetricFamily if spec.counter else GaugeMetricFamily
            labels = ["meter", spec.label] if spec.label else ["meter"]
            family = family_type(spec.name, spec.doc, labels=labels)
            for name, meter in meters:
                value = spec.value(meter)
                if isinstance(value, Mapping):
                    for label, n in value.items():
                        family.add_metric([name, label], n)
                elif value is not None:
                    family.add_metric([name], value)
            yield family

    def _readings(self, meters: list[tuple[str, _Meter]]) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for reading in _READINGS:
            for name, meter in meters:
                value = meter.state.fields.get(reading.field)
                if not isinstance(value, float):
                    continue
                if reading.metric not in families:
                    families[reading.metric] = reading.family()
                labels = [name, *(label for _, label in reading.labels)]
                families[reading.metric].add_metric(labels, value * reading.factor)
        if self.fuse_limit is not None:
            fuse = GaugeMetricFamily(
                "p1_fuse_limit_amperes",
                "Main fuse rating per phase, as configured (fuse_limit)",
                labels=["meter"],
            )
            for name, _ in meters:
                fuse.add_metric([name], self.fuse_limit)
            yield fuse
        gas = CounterMetricFamily("p1_gas_cubic_meters", "Gas meter register", labels=["meter"])
        for name, meter in meters:
            if meter.state.gas_m3 is not None:
                gas.add_metric([name], meter.state.gas_m3)
        yield from families.values()
        yield gas


def _mqtt(sink: MqttSink) -> Iterator[Metric]:
    """The MQTT sink's connection and what it sent or could not send, by meter."""
    stats = sink.stats
    connected = 1.0 if stats.connected else 0.0
    yield GaugeMetricFamily("p1_mqtt_connected", "1 while the MQTT broker is connected", connected)
    yield CounterMetricFamily("p1_mqtt_reconnects", "MQTT broker reconnections", stats.reconnects)
    sent = CounterMetricFamily(
        "p1_mqtt_messages", "MQTT messages the broker acknowledged", labels=["meter"]
    )
    lost = CounterMetricFamily(
        "p1_mqtt_dropped_messages",
        "MQTT messages not sent: the broker was away (disconnected) or too slow (queue_full)",
        labels=["meter", "reason"],
    )
    for meter, (acknowledged, dropped) in stats.by_meter().items():
        sent.add_metric([meter], acknowledged)
        for reason, n in dropped.items():
            lost.add_metric([meter, reason], n)
    yield sent
    yield lost


def _gas(result: Result) -> float | None:
    """The gas register of an accepted telegram (the last gas device's), if it has one."""
    gas = None
    for device in result.telegram.mbus if result.telegram is not None else ():
        reading = device.reading
        if device.kind == "gas" and reading is not None and isinstance(reading.value, float):
            gas = reading.value
    return gas
