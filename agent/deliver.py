"""The deliverer: one thread that drains the spool into InfluxDB, oldest first.

Points leave the spool only once the server acknowledged them. What the server says decides what
happens next:
- too large (413): the batch is halved until it fits; one line still too large is refused for good;
- refused data (400/422): the batch is halved to find the refused lines, which go to the spool's
  `rejected_points` (kept, not resent); the rest is delivered;
- throttled (429/503): wait as long as Retry-After says (capped), else back off;
- token, permission, bucket or database wrong (401/403/404): keep everything, retry slowly;
- server errors, timeouts, no connection, TLS: exponential backoff with full jitter, 1 s doubling
  to 60 s, back to nothing after a success.
A lone telegram goes out as soon as a reader calls notify(); under load, requests are at most one
per `linger` so points travel in batches. The spool's bounds are enforced every ENFORCE_INTERVAL
(`Spool.enforce` evicts, says so and counts).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import structlog

from agent.metercounts import MeterCounts
from agent.sinks.influx import WriteError, Writer
from agent.sinks.spool import Spool, SpoolError, SpoolRow

log = structlog.get_logger("p1-agent.deliver")

ENFORCE_INTERVAL = 10.0  # seconds between spool bound checks
IDLE_POLL = 0.25  # an idle deliverer notices `stop` this soon even without notify()
MAX_RETRY_AFTER = 300.0  # a server asking for longer is asked again after this
MIN_RETRY_AFTER = 0.5  # `Retry-After: 0` must not turn into a busy loop
TRANSIENT = (1.0, 60.0)  # backoff start and cap: server errors, timeouts, connection, TLS
CONFIG = (5.0, 300.0)  # auth and not found: someone has to fix something; keep asking slowly
SPLIT = ("too_large", "bad_data")

Sleep = Callable[[threading.Event, float], object]


def _wait(stop: threading.Event, seconds: float) -> object:
    return stop.wait(seconds)


@dataclass
class DeliveryStats:
    """What the deliverer did, read by the metrics collector under `lock`. The counts by meter
    are since the start, of every meter until count_only()."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    written: MeterCounts[str] = field(default_factory=MeterCounts)  # points acknowledged
    # Failed requests per (meter, kind); a failed batch counts once for every meter in it.
    failures: MeterCounts[tuple[str, str]] = field(default_factory=MeterCounts)
    dead_lettered: MeterCounts[str] = field(default_factory=MeterCounts)  # refused for good
    # Points this deliverer's bound checks evicted, by (meter, "size"|"age").
    evicted: MeterCounts[tuple[str, str]] = field(default_factory=MeterCounts)
    last_success: float | None = None  # wall clock of the last acknowledged write
    last_error: str | None = None
    backoff: float = 0.0  # the wait in progress after a failure; 0 when delivering normally
    retry_after_honoured: int = 0
    # Monotonic time of the first failed write since the last acknowledged one; None while
    # InfluxDB acknowledges.
    failing_since: float | None = None
    died: str | None = None  # why run() ended without being asked to (a bug); None while it runs

    def count_only(self, counted: Callable[[str], bool]) -> None:
        """Count by meter the meters `counted` admits only (the metrics': bounded)."""
        with self.lock:
            for counts in self._by_meter():
                counts.counted = counted

    def forget(self, meters: Collection[str]) -> None:
        """Drop these meters' counts (they left the metrics)."""
        with self.lock:
            for counts in self._by_meter():
                counts.forget(meters)

    def _by_meter(self) -> tuple[MeterCounts[str] | MeterCounts[tuple[str, str]], ...]:
        return self.written, self.failures, self.dead_lettered, self.evicted


class Deliverer:
    def __init__(
        self,
        spool: Spool,
        writer: Writer,
        *,
        batch_size: int = 5000,
        linger: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Sleep = _wait,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.spool = spool
        self.writer = writer
        self.batch_size = batch_size
        self.linger = linger
        self.stats = DeliveryStats()
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._jitter = jitter
        self._wake = threading.Event()
        self._failures = 0  # consecutive failed attempts, for the backoff
        self._logged: tuple[str, str] | None = None  # the error last logged

    def notify(self) -> None:
        """New points are in the spool (readers call this after each append)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; an in-flight request finishes first. Closes the writer."""
        next_enforce = self._clock()
        last_send = float("-inf")
        try:
            while not stop.is_set():
                self._wake.clear()  # before reading, so an append after the read wakes us
                try:
                    if self._clock() >= next_enforce:
                        self._enforce()
                        next_enforce = self._clock() + ENFORCE_INTERVAL
                    rows = self.spool.batch(self.batch_size)
                    if not rows:
                        self._idle(stop, next_enforce)
                        continue
                    hold = last_send + self.linger - self._clock()
                    if len(rows) < self.batch_size and hold > 0:
                        self._sleep(stop, hold)  # let a burst gather into one request
                        continue
                    last_send = self._clock()
                    delay = self._deliver(rows, stop)
                except SpoolError as exc:
                    delay = self._failed(exc, "spool")
                except Exception as exc:  # a bug must not end delivery for the process' life
                    log.exception("deliverer error", error=str(exc))
                    delay = self._failed(exc, "internal")
                if delay > 0:
                    self._sleep(stop, delay)
                    with self.stats.lock:
                        self.stats.backoff = 0.0
        except BaseException as exc:  # what no handler above catches ends delivery: say so
            with self.stats.lock:
                self.stats.died = f"{type(exc).__name__}: {exc}"
            log.critical(
                "the deliverer stopped; points stay in the spool until the agent restarts",
                error=self.stats.died,
                exc_info=True,
            )
        finally:
            self.writer.close()

    @property
    def died(self) -> str | None:
        """Why delivery ended without a stop (for /healthz); None while it runs."""
        with self.stats.lock:
            return self.stats.died

    def refusing(self, longer_than: float) -> str | None:
        """The trouble, when InfluxDB has refused writes (failed them, whatever the kind) for
        longer than `longer_than` seconds; None otherwise."""
        with self.stats.lock:
            since, error = self.stats.failing_since, self.stats.last_error
        if since is None or self._clock() - since <= longer_than:
            return None
        return f"InfluxDB has refused writes for {self._clock() - since:.0f} s: {error}"

    def _idle(self, stop: threading.Event, until: float) -> None:
        while not stop.is_set() and not self._wake.is_set():
            left = until - self._clock()
            if left <= 0:
                return
            self._wake.wait(min(left, IDLE_POLL))

    def _enforce(self) -> None:
        try:
            evicted = self.spool.enforce(self._wall())
        except SpoolError as exc:
            log.error("cannot enforce the spool bounds", error=str(exc))
            return
        if evicted:
            with self.stats.lock:
                self.stats.evicted.count(evicted)

    def _deliver(self, rows: Sequence[SpoolRow], stop: threading.Event) -> float:
        """Send one batch; the wait before the next attempt (0 when it went through)."""
        error = self._send(rows, stop)
        if error is None:
            self._succeeded()
            return 0.0
        with self.stats.lock:
            if self.stats.failing_since is None:
                self.stats.failing_since = self._clock()
        if error.kind == "throttled" and error.retry_after is not None:
            self._failures += 1
            delay = min(max(error.retry_after, MIN_RETRY_AFTER), MAX_RETRY_AFTER)
            self._report(error, error.kind, delay)
            with self.stats.lock:
                self.stats.retry_after_honoured += 1
            return delay
        return self._failed(error, error.kind)

    def _send(self, rows: Sequence[SpoolRow], stop: threading.Event) -> WriteError | None:
        """Write rows, halving on too large or refused data; the error that holds delivery up."""
        try:
            self.writer.write([row.line for row in rows])
        except WriteError as exc:
            meters = {row.meter for row in rows}
            with self.stats.lock:
                self.stats.failures.count((meter, exc.kind) for meter in meters)
            if exc.kind not in SPLIT:
                return exc
            if len(rows) == 1:
                self._refuse(rows, exc)
                return None
            if exc.kind == "too_large":
                # Worth knowing (a proxy's body limit, say); the log's rate limit keeps the
                # halvings of one batch from flooding it.
                log.warning("InfluxDB refused a batch as too large; splitting it", points=len(rows))
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                if stop.is_set():
                    return None  # the rest stays in the spool for the next run
                error = self._send(part, stop)
                if error is not None:
                    return error
            return None
        # Counted before the spool lets go, so nobody sees an empty spool and fewer points written.
        written = Counter(row.meter for row in rows)
        with self.stats.lock:
            self.stats.written.count(written)
            self.stats.last_success = self._wall()
            self.stats.failing_since = None
        self.spool.ack([row.id for row in rows])
        return None

    def _refuse(self, rows: Sequence[SpoolRow], error: WriteError) -> None:
        self.spool.dead_letter(rows, str(error))
        with self.stats.lock:
            self.stats.dead_lettered.count(row.meter for row in rows)
        log.warning(
            "InfluxDB refused a point; kept in the spool's rejected_points, not resent",
            meter=rows[0].meter,
            error=str(error),
            line=rows[0].line[:300],
        )

    def _succeeded(self) -> None:
        if self._logged is not None:
            log.info("delivering to InfluxDB again", failed_attempts=self._failures)
        self._failures = 0
        self._logged = None

    def _failed(self, error: Exception, kind: str) -> float:
        self._failures += 1
        configuration = kind in ("auth", "not_found")
        start, cap = CONFIG if configuration else TRANSIENT
        ceiling = min(cap, start * 2.0 ** min(self._failures - 1, 30))
        # Full jitter spreads the retries of many agents; configuration errors wait the full time.
        delay = ceiling if configuration else self._jitter() * ceiling
        self._report(error, kind, delay)
        return delay

    def _report(self, error: Exception, kind: str, delay: float) -> None:
        message = str(error)
        # Throttling messages carry the wait, which changes; the kind is what is news.
        key = (kind, "" if kind == "throttled" else message)
        with self.stats.lock:
            self.stats.last_error = message
            self.stats.backoff = delay
        if key != self._logged:
            self._logged = key
            log.warning(
                "cannot deliver to InfluxDB; points stay in the spool",
                error=message,
                kind=kind,
                retry_in=round(delay, 1),
            )
