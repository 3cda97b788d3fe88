"""`p1-agent run`: sources → pipeline → local store, with metrics and a live status line.

One reader thread per source feeds its own MeterPipeline; accepted telegrams are committed to the
store before they count as accepted. SIGTERM/SIGINT stop the readers and exit 0.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import UTC, datetime
from types import FrameType

import structlog

from agent.config import Settings
from agent.pipeline import MeterPipeline
from agent.points import telegram_points
from agent.sinks import lineprotocol
from agent.sinks.noiselog import NoiseLog
from agent.sinks.prometheus import Metrics, serve
from agent.sinks.store import Store
from agent.sources import Source, open_source
from agent.telegram import MeterZone

log = structlog.get_logger("p1-agent")


class Agent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.metrics = Metrics()
        self.zone = MeterZone(settings.meter_timezone)
        self.sources: list[Source] = [open_source(url, self.stop) for url in settings.sources]
        self.store = Store(settings.data_dir / "store.sqlite")
        self.noise = NoiseLog(settings.data_dir)
        self._store_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _read(self, source: Source) -> None:
        pipeline = MeterPipeline(zone=self.zone, max_frame=self.settings.max_frame)
        state = self.metrics.meter(source.name)
        state.connected = True
        meter_name = source.name
        try:
            while not self.stop.is_set():
                data = source.read()
                results = pipeline.close() if data is None else pipeline.feed(data)
                now = time.time()
                for result in results:
                    telegram = result.telegram
                    if telegram is not None and telegram.meter != meter_name:
                        # The meter names itself: its equipment identifier labels everything.
                        state.connected = False
                        state = self.metrics.rename(meter_name, telegram.meter)
                        meter_name = telegram.meter
                        state.connected = True
                    if telegram is not None:
                        points = telegram_points(
                            telegram,
                            meter=meter_name,
                            fields=result.fields,
                            repaired=result.status == "repaired",
                            time=datetime.fromtimestamp(now, UTC),  # meters without a clock
                        )
                        with self._store_lock:
                            self.store.append(meter_name, now, lineprotocol.encode_all(points))
                    self.metrics.observe(meter_name, result, now)
                    if result.failure is not None:
                        self.noise.write(result, meter_name, now)
                if data is None:
                    log.info("source ended", source=source.name)
                    break
        finally:
            state.connected = False
            source.close()

    def healthy(self) -> bool:
        return not self.stop.is_set()

    def start(self) -> None:
        for source in self.sources:
            thread = threading.Thread(
                target=self._read, args=(source,), name=source.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def status_line(self) -> str:
        parts = []
        for name, state in self.metrics.meters.items():
            t = state.telegrams
            power = state.fields.get("power_import_kw")
            parts.append(
                f"{name}: {sum(t.values())} telegrams (valid {t['valid']}, "
                f"repaired {t['repaired']}, rejected {t['rejected']})"
                + (f", import {power:.3f} kW" if isinstance(power, float) else "")
            )
        with self._store_lock:
            depth = self.store.depth()
        return "; ".join(parts) + f"; store {depth} points"

    def update_store_metrics(self) -> None:
        with self._store_lock:
            depths = self.store.depth_by_meter()
        for name, count in depths.items():
            self.metrics.meter(name).spool_points = count

    def wait(self) -> None:
        tty = sys.stderr.isatty()
        last_log = time.monotonic()
        while not self.stop.wait(1.0):
            if not any(t.is_alive() for t in self._threads):
                break
            self.update_store_metrics()
            if tty:
                sys.stderr.write("\r\x1b[K" + self.status_line())
                sys.stderr.flush()
            elif time.monotonic() - last_log >= 60:
                last_log = time.monotonic()
                log.info("status", summary=self.status_line())
        if tty:
            sys.stderr.write("\n")

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.store.close()


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
    log.info(
        "started",
        sources=[s.name for s in agent.sources],
        store=str(agent.store.path),
        metrics=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
    )
    agent.start()
    agent.wait()
    agent.stop.set()
    summary = agent.status_line()
    agent.shutdown()
    server.shutdown()
    log.info("stopped", summary=summary)
    return 0
