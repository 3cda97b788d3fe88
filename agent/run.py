"""`p1-agent run`: sources → pipeline → spool → InfluxDB, with metrics, logs and a status line.

One reader thread per source feeds its own MeterPipeline. An accepted telegram's points are
committed to the spool before they count as accepted; the deliverer thread drains the spool into
InfluxDB and deletes points only once the server acknowledged them. Without an InfluxDB the spool
is the embedded store. SIGTERM/SIGINT/SIGHUP stop the readers, commit what they hold and exit 0.
One agent per data directory: it holds a lock on DATA_DIR/lock for as long as it runs.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import structlog

from agent.config import Settings
from agent.core.decrypting import NO_KEY, PROBLEMS, EncryptionSniffer, open_pipeline
from agent.core.diagnose import NO_FRAMES, OK, LinkDiagnosis
from agent.core.gcm import GcmKeys
from agent.core.pipeline import Result
from agent.core.points import telegram_points
from agent.core.telegram import MeterZone
from agent.damagesummary import DamageSummary
from agent.deliver import Deliverer
from agent.formats import lineprotocol
from agent.httpserver import Health, serve, url_host
from agent.meterkeys import source_keys
from agent.redact import mask_url
from agent.sinks.damagelog import DamageLog
from agent.sinks.influx import make_writer
from agent.sinks.mqtt import MqttSink
from agent.sinks.prometheus import Link, MeterState, Metrics
from agent.sinks.rawcapture import RawCapture
from agent.sinks.spool import SpoolError, open_store
from agent.sources import Source, open_source

log = structlog.get_logger("p1-agent")

# Telegrams a reader holds while the spool cannot be written (disk full): about 3 hours of a
# meter sending every second, a day of one sending every 10 s; beyond that the oldest go.
PENDING_LIMIT = 10_000
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # SIGHUP's default kills mid-write


class DataDirInUse(ValueError):
    """Another agent holds the data directory; one line for the user."""


class DataDirLock:
    """An exclusive flock on DATA_DIR/lock while the agent runs: two agents on one directory
    would evict each other's rows and deliver each other's points. The kernel releases it when
    the process ends, however it ends."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock"
        self._fd = -1
        self._identity = (0, 0)
        self._take()

    def _take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirInUse(
                f"data directory {self.path.parent} is in use by another agent"
                + (f" (pid {holder})" if holder.isdigit() else "")
                + "; stop it, or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        stat = os.fstat(fd)
        self._fd, self._identity = fd, (stat.st_dev, stat.st_ino)

    def check(self) -> None:
        """Lock anew if the file went (the directory deleted): else a second agent could start."""
        try:
            stat = os.stat(self.path)
            if (stat.st_dev, stat.st_ino) == self._identity:
                return
        except FileNotFoundError:
            pass
        old = self._fd
        self._take()
        os.close(old)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Reader:
    """One source: bytes → pipeline → spool, and this meter's metrics."""

    def __init__(
        self, agent: Agent, source: Source, name: str | None, keys: GcmKeys | None = None
    ) -> None:
        self.agent = agent
        self.source = source
        self.configured_name = name
        self.meter = name or source.name
        self.pipeline = open_pipeline(keys, zone=agent.zone, max_frame=agent.settings.max_frame)
        self.problem: str | None = None  # the encrypted meter's trouble last said (PROBLEMS)
        self.sniffer = EncryptionSniffer() if keys is None else None
        self.raw = (
            RawCapture(
                agent.settings.data_dir,
                name or source.name,
                max_age=agent.settings.raw_capture_max_age,
            )
            if agent.settings.raw_capture
            else None
        )
        self.pending: deque[tuple[str, float, list[str]]] = deque()
        agent.metrics.add_source(source.name)
        agent.metrics.meter(self.meter)  # the source's series from the start
        self.hint_shown: str | None = None
        self.diagnosis = LinkDiagnosis()
        self.down_since: float | None = time.monotonic()  # None while the source is connected
        self.ended = False  # run() returned: the metrics show the link as it was

    @property
    def state(self) -> MeterState:
        return self.agent.metrics.meter(self.meter)

    def link(self) -> Link:
        """The source's link, asked when Prometheus scrapes (on the meter this reader labels)."""
        source = self.source
        return Link(source.connected, source.reconnects, source.bytes_total, self.diagnosis.cause)

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
            agent.metrics.leave(self.meter, self.link())
            self.ended = True
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
            if any(r.accepted for r in results):
                self.sniffer = None  # telegrams come: the meter does not encrypt
            elif self.sniffer is not None and data and self.sniffer.feed(data):
                log.error(NO_KEY, source=self.source.name)
            self._diagnose(data or b"", results)
            if self.pending:
                self._flush_pending()
            self._watch_source()
            agent.metrics.expire(self.source.name, time.monotonic(), keep=self.meter)
            if data is None:
                log.info("source ended", source=self.source.name)
                return
        for result in self.pipeline.close():
            self._handle(result, time.time())
        self._flush_pending()

    def _handle(self, result: Result, now: float) -> None:
        agent = self.agent
        telegram = result.telegram
        name = self.meter  # the `meter` tag of this frame
        tracked = True  # counted in that meter's metrics (within the source's max_meters)
        if telegram is not None:
            name = self.configured_name or telegram.meter
            tracked = agent.metrics.admit(self.source.name, name, time.monotonic())
            if tracked and name != self.meter:
                # The meter names itself: its equipment identifier labels everything from now on.
                agent.metrics.rename(self.meter, name, self.link())
                self.meter = name
        meter_time = None
        if telegram is not None:
            points = telegram_points(
                telegram,
                meter=name,
                fields=result.fields,
                repaired=result.status == "repaired",
                time=datetime.fromtimestamp(now, UTC),  # meters without a clock
            )
            self.pending.append((name, now, lineprotocol.encode_all(points)))
            self._flush_pending()
            self.source.telegram_seen()
            if telegram.meter_time is not None:
                meter_time = telegram.meter_time.timestamp()
        if tracked:
            agent.metrics.observe(self.meter, result, now, meter_time)
            if agent.mqtt is not None:  # after the spool: MQTT is a live feed, not the record
                agent.mqtt.publish(self.meter, result, self.state)
        if result.error is not None:
            # A bug in the core, not noise: loud, with its traceback (rate-limited like others).
            log.error(
                "the core failed on a frame; it is rejected", meter=name, traceback=result.error
            )
        self._say_problem(result, name)
        if result.failure is not None:
            agent.damage_log.write(result, name, now)
            line = agent.damage_summary.observe(self.meter, result, now)
            if line is not None:
                log.warning(line.event, **line.fields)

    def _say_problem(self, result: Result, name: str) -> None:
        """One line when frames start to fail for a wrong key or a replay; again only after a
        telegram came through."""
        if result.accepted:
            self.problem = None
        elif result.reason in PROBLEMS and result.reason != self.problem:
            self.problem = result.reason
            log.error(PROBLEMS[result.reason], meter=name, reason=result.reason)

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

    def _watch_source(self) -> None:
        """After every read: since when the source is down (for /healthz), and its hint once."""
        if self.source.connected:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = time.monotonic()
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
        self.metrics = Metrics(
            settings.fuse_limit, max_meters=settings.max_meters, meter_expiry=settings.meter_expiry
        )
        self.zone = MeterZone(settings.meter_timezone)
        self.lock = DataDirLock(settings.data_dir)  # first: nothing else touches the directory
        try:
            self._open(settings)
        except BaseException:
            self.lock.release()
            raise
        delivery = self.deliverer.stats if self.deliverer is not None else None
        self.metrics.read_from(self.links, self.spool, delivery, self.mqtt)

    def _open(self, settings: Settings) -> None:
        self.spool, damage = open_store(
            settings.data_dir / "store.sqlite",
            max_bytes=settings.spool_max_bytes,
            max_age=settings.spool_max_age,
            sync_interval=settings.sync_interval,
            # Delivered points leave the spool anyway; thinning them would lose readings.
            downsample_after=settings.spool_downsample_after if settings.influx is None else 0,
        )
        if damage is not None:
            log.error(
                f"the store was damaged ({damage.error}); moved aside to {damage.moved_to}, "
                f"starting a new one with the {damage.salvaged} points that still read in it"
                " (`p1-agent export` writes them); the damaged file is kept, for inspection",
                moved_to=str(damage.moved_to),
                salvaged=damage.salvaged,
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
                    settings=settings,
                ),
                s.name,
                source_keys(settings, s),
            )
            for s in settings.sources
        ]
        self.mqtt = MqttSink(settings) if settings.mqtt_url is not None else None
        self.damage_log = DamageLog(settings.data_dir, max_age=settings.raw_capture_max_age)
        self.damage_summary = DamageSummary(settings.summary_interval)
        self._threads: list[threading.Thread] = []
        self._deliver_stop = threading.Event()
        self._deliver_thread: threading.Thread | None = None

    def links(self) -> dict[str, Link]:
        """For a scrape: the link of every running reader's source, by the meter it labels."""
        return {reader.meter: reader.link() for reader in self.readers if not reader.ended}

    def healthy(self) -> bool:
        return not self.health().dead

    def health(self) -> Health:
        """For /healthz: what only a restart mends, and trouble outside the process."""
        dead = []
        if self.failed.is_set():
            dead.append("a reader stopped on an unexpected error")
        elif self.stop.is_set():
            dead.append("stopping")
        died = self.deliverer.died if self.deliverer is not None else None
        if died is not None:
            dead.append(f"the deliverer stopped ({died}); points stay in the spool")
        degraded = []
        now, limit = time.monotonic(), self.settings.read_timeout
        for reader in self.readers:
            since = reader.down_since
            if since is not None and now - since > limit:
                degraded.append(
                    f"source {reader.meter} disconnected for {now - since:.0f} s (read timeout "
                    f"{limit:g} s): {reader.source.last_error or 'not connected yet'}"
                )
        refusing = (
            self.deliverer.refusing(self.settings.influx_degraded_after)
            if self.deliverer is not None
            else None
        )
        if refusing is not None:
            degraded.append(refusing)
        return Health(tuple(dead), tuple(degraded))

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()  # connects in its own thread
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

    def check_store(self) -> None:
        """Notice the data directory's files deleted or replaced under the running agent."""
        try:
            self.lock.check()
        except (OSError, DataDirInUse) as exc:
            log.error("cannot lock the data directory again", error=str(exc))
        spool = self.spool
        if not spool.replaced():
            return
        what = "store" if self.deliverer is None else "spool"
        try:
            foreign = spool.rebuild()
        except SpoolError as exc:
            log.error(f"the {what} was deleted or replaced; cannot write it anew", error=str(exc))
            return
        log.error(
            f"the {what} {spool.path} was deleted or replaced while the agent ran; written anew"
            " with the points it held",
            points=sum(spool.stats(time.time()).depth_by_meter.values()),
            **({"moved_aside": str(foreign)} if foreign is not None else {}),
        )

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
        try:
            depth = str(self.spool.stats(time.time()).depth)
        except SpoolError:
            depth = "unreadable"
        return "; ".join(parts) + f"; {where} {depth} points"

    def tick(self) -> None:
        """Once a second: notice the store deleted or replaced, and without an InfluxDB (whose
        deliverer does it) enforce the store's bounds. A spool that fails here (disk full) is
        said and tried again; the readers hold and count what they cannot commit. No work per
        meter unless points are due: the metrics ask the owners at scrape time."""
        self.check_store()
        try:
            self.spool.maintain()
        except SpoolError as exc:
            log.error("cannot sync or fold the journal; trying again", error=str(exc))
        if self.deliverer is None:
            try:
                self.spool.enforce(time.time())
            except SpoolError as exc:
                log.error("cannot read or bound the spool; trying again", error=str(exc))

    def wait(self) -> None:
        tty = sys.stderr.isatty()
        last_log = time.monotonic()
        while not self.stop.wait(1.0):
            if not any(t.is_alive() for t in self._threads):
                break
            self.tick()
            for line in self.damage_summary.due(time.time()):
                log.info(line.event, **line.fields)
            if tty:
                sys.stderr.write("\r\x1b[K" + self.status_line())
                sys.stderr.flush()
            elif time.monotonic() - last_log >= 60:
                last_log = time.monotonic()
                log.info("status", summary=self.status_line())
        if tty:
            sys.stderr.write("\n")

    def shutdown(self) -> str:
        """Readers first (they commit what they hold), then the deliverer, then the spool. The
        status line at the end, with what the readers took in while they stopped."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.mqtt is not None:
            self.mqtt.close()
        self._deliver_stop.set()
        if self._deliver_thread is not None:
            self._deliver_thread.join(timeout=15)
        summary = self.status_line()
        self.spool.close()
        self.lock.release()
        return summary


def run(settings: Settings) -> int:
    agent = Agent(settings)
    stopped_by: list[int] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)  # logged by the main loop: a handler must not take locks
        agent.stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        server = serve(agent.metrics, settings.metrics_host, settings.metrics_port, agent.health)
    except OSError as exc:
        address = f"{url_host(settings.metrics_host)}:{settings.metrics_port}"
        raise ValueError(f"cannot serve metrics on {address}: {exc.strerror}") from exc
    target = settings.influx
    log.info(
        "started",
        sources=[r.source.name for r in agent.readers],
        spool=str(agent.spool.path),
        influx=f"{mask_url(target.url)} ({target.api})" if target else "none (local store only)",
        metrics=f"http://{url_host(settings.metrics_host)}:{settings.metrics_port}/metrics",
        mqtt=mask_url(settings.mqtt_url) if settings.mqtt_url else "none",
    )
    if target is not None and not target.verify_tls and target.url.startswith("https"):
        log.warning("TLS certificate verification is off for InfluxDB")
    agent.start()
    agent.wait()
    agent.stop.set()
    if stopped_by:
        log.info("stopping", signal=signal.Signals(stopped_by[0]).name)
    summary = agent.shutdown()
    server.shutdown()
    log.info("stopped", summary=summary)
    return 1 if agent.failed.is_set() else 0
