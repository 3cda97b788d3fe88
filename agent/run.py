"""`p1-agent run`: sources → pipeline → spool → InfluxDB, with metrics, logs and a status line.

One reader thread per source feeds its own MeterPipeline. An accepted telegram's points are
committed to the spool before they count as accepted; the deliverer thread drains the spool into
InfluxDB and deletes points only once the server acknowledged them. Without an InfluxDB the spool
is the embedded store. SIGTERM/SIGINT stop the readers, commit what they hold and exit 0.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from types import FrameType

import structlog

from agent.config import Settings
from agent.deliver import Deliverer
from agent.diagnose import NO_FRAMES, OK, LinkDiagnosis
from agent.noisesummary import NoiseSummary
from agent.pipeline import MeterPipeline, Result
from agent.points import telegram_points
from agent.redact import mask_url
from agent.sinks import lineprotocol
from agent.sinks.influx import KINDS, make_writer
from agent.sinks.noiselog import NoiseLog
from agent.sinks.prometheus import MeterState, Metrics, serve
from agent.sinks.rawcapture import RawCapture
from agent.sinks.spool import Spool, SpoolError
from agent.sources import Source, open_source
from agent.telegram import MeterZone

log = structlog.get_logger("p1-agent")

# Telegrams a reader holds while the spool cannot be written (disk full): about 3 hours of a
# meter sending every second, a day of one sending every 10 s; beyond that the oldest go.
PENDING_LIMIT = 10_000


class Reader:
    """One source: bytes → pipeline → spool, and this meter's metrics."""

    def __init__(self, agent: Agent, source: Source, name: str | None) -> None:
        self.agent = agent
        self.source = source
        self.configured_name = name
        self.meter = name or source.name
        self.pipeline = MeterPipeline(zone=agent.zone, max_frame=agent.settings.max_frame)
        self.raw = (
            RawCapture(agent.settings.data_dir, name or source.name)
            if agent.settings.raw_capture
            else None
        )
        self.pending: deque[tuple[str, float, list[str]]] = deque()
        self.hint_shown: str | None = None
        self.diagnosis = LinkDiagnosis()

    @property
    def state(self) -> MeterState:
        return self.agent.metrics.meter(self.meter)

    def run(self) -> None:
        agent = self.agent
        try:
            self._read()
        except Exception:
            # A bug must not leave a running agent that reads nothing: say so, turn /healthz
            # red and end the process with a failure so systemd or Docker restarts it.
            log.exception("reader stopped by an unexpected error", source=self.source.name)
            agent.failed.set()
            agent.stop.set()
        finally:
            self.state.connected = False
            self.source.close()
            if self.raw is not None:
                self.raw.close()
            if self.pending:
                self.state.spool_dropped += len(self.pending)
                log.error(
                    "telegrams lost at shutdown: the spool could not be written",
                    meter=self.meter,
                    telegrams=len(self.pending),
                )

    def _read(self) -> None:
        agent = self.agent
        while not agent.stop.is_set():
            data = self.source.read()
            now = time.time()
            if data and self.raw is not None:
                self.raw.write(data, now)
            results = self.pipeline.close() if data is None else self.pipeline.feed(data)
            for result in results:
                self._handle(result, now)
            self._diagnose(data or b"", results)
            if self.pending:
                self._flush_pending()
            self.sync_state()
            if data is None:
                log.info("source ended", source=self.source.name)
                return
        for result in self.pipeline.close():
            self._handle(result, time.time())
        self._flush_pending()

    def _handle(self, result: Result, now: float) -> None:
        agent = self.agent
        telegram = result.telegram
        if telegram is not None and self.configured_name is None and telegram.meter != self.meter:
            # The meter names itself: its equipment identifier labels everything from now on.
            agent.metrics.meter(self.meter).connected = False
            agent.metrics.rename(self.meter, telegram.meter)
            self.meter = telegram.meter
        meter_time = None
        if telegram is not None:
            points = telegram_points(
                telegram,
                meter=self.meter,
                fields=result.fields,
                repaired=result.status == "repaired",
                time=datetime.fromtimestamp(now, UTC),  # meters without a clock
            )
            self.pending.append((self.meter, now, lineprotocol.encode_all(points)))
            self._flush_pending()
            self.source.telegram_seen()
            if telegram.meter_time is not None:
                meter_time = telegram.meter_time.timestamp()
        agent.metrics.observe(self.meter, result, now, meter_time)
        if result.failure is not None:
            agent.noise.write(result, self.meter, now)
            line = agent.noise_summary.observe(self.meter, result, now)
            if line is not None:
                log.warning(line.event, **line.fields)

    def _diagnose(self, data: bytes, results: list[Result]) -> None:
        pipeline = self.pipeline
        change = self.diagnosis.update(
            results, bytes_in=pipeline.framer.bytes_in, masking=pipeline.parity.masking, data=data
        )
        if change is not None:
            say = log.info if change.cause == OK else log.warning
            say(change.message, meter=self.meter, cause=change.cause, **change.evidence)

    def _flush_pending(self) -> None:
        """Commit held telegrams oldest first; on failure keep them (bounded) and retry later."""
        agent = self.agent
        while self.pending:
            meter, received, lines = self.pending[0]
            try:
                agent.spool.append(meter, received, lines)
            except SpoolError as exc:
                self.state.spool_errors += 1
                log.error("cannot write the spool; holding readings in memory", error=str(exc))
                while len(self.pending) > PENDING_LIMIT:
                    self.pending.popleft()
                    self.state.spool_dropped += 1
                return
            self.pending.popleft()
            if agent.deliverer is not None:
                agent.deliverer.notify()

    def sync_state(self) -> None:
        state = self.state
        state.connected = self.source.connected
        state.reconnects = self.source.reconnects
        state.bytes_total = self.source.bytes_total
        state.diagnosis = self.diagnosis.cause
        hint = self.source.hint
        # The diagnosis has said it already, and which of the hint's causes the bytes point at.
        if hint and hint != self.hint_shown and self.diagnosis.cause != NO_FRAMES:
            self.hint_shown = hint
            log.warning(hint, source=self.source.name)


class Agent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.failed = threading.Event()  # a reader died of a bug
        self.metrics = Metrics(settings.fuse_limit)
        self.zone = MeterZone(settings.meter_timezone)
        self.spool = Spool(
            settings.data_dir / "store.sqlite",
            max_bytes=settings.spool_max_bytes,
            max_age=settings.spool_max_age,
        )
        self.deliverer = (
            Deliverer(self.spool, make_writer(settings.influx), batch_size=settings.batch_size)
            if settings.influx is not None
            else None
        )
        self.readers = [
            Reader(
                self,
                open_source(
                    s.url,
                    self.stop,
                    serial_settings=s.serial_settings,
                    read_timeout=settings.read_timeout,
                    name=s.name,
                ),
                s.name,
            )
            for s in settings.sources
        ]
        self.noise = NoiseLog(settings.data_dir)
        self.noise_summary = NoiseSummary(settings.summary_interval)
        self._threads: list[threading.Thread] = []
        self._deliver_stop = threading.Event()
        self._deliver_thread: threading.Thread | None = None

    def healthy(self) -> bool:
        return not self.stop.is_set() and not self.failed.is_set()

    def start(self) -> None:
        for reader in self.readers:
            thread = threading.Thread(
                target=reader.run, name=f"read {reader.source.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if self.deliverer is not None:
            self._deliver_thread = threading.Thread(
                target=self.deliverer.run, args=(self._deliver_stop,), name="deliver", daemon=True
            )
            self._deliver_thread.start()

    def status_line(self) -> str:
        parts = []
        for name, state in list(self.metrics.meters.items()):
            t = state.telegrams
            power = state.fields.get("power_import_kw")
            parts.append(
                f"{name}: {sum(t.values())} telegrams (valid {t['valid']}, "
                f"repaired {t['repaired']}, rejected {t['rejected']})"
                + (f", import {power:.3f} kW" if isinstance(power, float) else "")
            )
        where = "spool" if self.deliverer is not None else "store"
        return "; ".join(parts) + f"; {where} {sum(self.spool_depths().values())} points"

    def spool_depths(self) -> dict[str, int]:
        return self.spool.stats(time.time()).depth_by_meter

    def update_metrics(self) -> None:
        """Once a second: spool and delivery state into the metrics (cheap, read at scrape)."""
        now = time.time()
        stats = self.spool.stats(now)
        for name in set(stats.depth_by_meter) | set(self.metrics.meters):
            state = self.metrics.meter(name)
            state.spool_points = stats.depth_by_meter.get(name, 0)
            state.spool_oldest_age = stats.oldest_age_by_meter.get(name, 0.0)
        if self.deliverer is None:
            self._count_evictions(self.spool.enforce(now))
            return
        delivered = self.deliverer.stats
        with delivered.lock:
            written = dict(delivered.written)
            failures = dict(delivered.failures)
            refused = dict(delivered.dead_lettered)
            evicted = dict(delivered.evicted)
        for name, n in written.items():
            self.metrics.meter(name).influx_written = n
        for name in self.metrics.meters:
            # Every kind from 0, so increase() sees the first failure of each.
            state = self.metrics.meter(name)
            for kind in KINDS:
                state.influx_errors[kind] = failures.get((name, kind), 0)
        for name, n in refused.items():
            self.metrics.meter(name).influx_refused = n
        for (name, reason), n in evicted.items():
            self.metrics.meter(name).spool_evicted[reason] = n

    def _count_evictions(self, evicted: dict[tuple[str, str], int]) -> None:
        for (name, reason), n in evicted.items():
            self.metrics.meter(name).spool_evicted[reason] += n
            log.warning("spool bound reached; oldest points dropped", meter=name, reason=reason)

    def wait(self) -> None:
        tty = sys.stderr.isatty()
        last_log = time.monotonic()
        while not self.stop.wait(1.0):
            if not any(t.is_alive() for t in self._threads):
                break
            self.update_metrics()
            for line in self.noise_summary.due(time.time()):
                log.info(line.event, **line.fields)
            if tty:
                sys.stderr.write("\r\x1b[K" + self.status_line())
                sys.stderr.flush()
            elif time.monotonic() - last_log >= 60:
                last_log = time.monotonic()
                log.info("status", summary=self.status_line())
        if tty:
            sys.stderr.write("\n")

    def shutdown(self) -> None:
        """Readers first (they commit what they hold), then the deliverer, then the spool."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._deliver_stop.set()
        if self._deliver_thread is not None:
            self._deliver_thread.join(timeout=15)
        self.spool.close()


def run(settings: Settings) -> int:
    agent = Agent(settings)

    def _stop(signum: int, frame: FrameType | None) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server = serve(agent.metrics, settings.metrics_host, settings.metrics_port, agent.healthy)
    except OSError as exc:
        address = f"{settings.metrics_host}:{settings.metrics_port}"
        raise ValueError(f"cannot serve metrics on {address}: {exc.strerror}") from exc
    target = settings.influx
    log.info(
        "started",
        sources=[r.source.name for r in agent.readers],
        spool=str(agent.spool.path),
        influx=f"{mask_url(target.url)} ({target.api})" if target else "none (local store only)",
        metrics=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
    )
    if target is not None and not target.verify_tls and target.url.startswith("https"):
        log.warning("TLS certificate verification is off for InfluxDB")
    agent.start()
    agent.wait()
    agent.stop.set()
    summary = agent.status_line()
    agent.shutdown()
    server.shutdown()
    log.info("stopped", summary=summary)
    return 1 if agent.failed.is_set() else 0
