"""The sub-commands behind the CLI, each building its settings and calling into the modules."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.core.decrypting import (
    NO_KEY,
    PROBLEMS,
    WRONG_AUTHENTICATION_KEY,
    WRONG_KEY,
    EncryptionSniffer,
    open_pipeline,
)
from agent.core.telegram import MeterZone

if TYPE_CHECKING:
    from agent.config import Settings, SourceSettings
    from agent.noisyline import NoisyChannel
    from agent.simulate import SimulatedMeter


def _stdout_open(output: str) -> None:
    """A process started with its stdout closed has `sys.stdout` None: say so, in one line."""
    if output == "-" and sys.stdout is None:
        raise ValueError("stdout is closed: give --output FILE")


def replay_command(args: argparse.Namespace) -> int:
    from agent.meterkeys import env_keys
    from agent.replay import (
        TimeOptions,
        capture_files,
        collect_seldom,
        open_output,
        replay,
        replay_parallel,
        total_size,
    )

    keys = env_keys(os.environ)  # an encrypted capture: the keys from P1_DECRYPTION_KEY…
    make_pipeline = functools.partial(
        open_pipeline, keys, zone=MeterZone(args.meter_timezone), max_frame=args.max_frame
    )
    if args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    args.paths = capture_files(args.paths)
    for path in args.paths:
        if path != "-":
            with open(path, "rb"):
                pass  # fail early, with the path, before any output is written
    bar: Any = None
    progress = lambda n: None  # noqa: E731
    if sys.stderr.isatty() and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(
            total=total_size(args.paths), unit="B", unit_scale=True, desc="replay", leave=False
        )
        progress = bar.update
    _stdout_open(args.output)
    out = open_output(args.output)
    collect_seldom()
    try:
        times = TimeOptions(args.start, args.interval)
        if args.jobs > 1 and len(args.paths) > 1:
            summary = replay_parallel(
                args.paths, args.format, out, make_pipeline, args.jobs, progress, times
            )
        else:
            summary = replay(args.paths, args.format, out, make_pipeline(), progress, times)
    finally:
        if bar is not None:
            bar.close()
        if args.output != "-":
            out.close()
    for line in summary.lines():
        sys.stderr.write(line + "\n")
    return 1 if summary.damaged else 0


def simulate_command(args: argparse.Namespace) -> int:
    from agent.simulate import LAST_YEAR, SimulatedMeter

    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise ValueError(f"start time {args.start!r} is not ISO 8601") from None
        if start.tzinfo is None:
            raise ValueError(f"start time {args.start!r} needs an offset, e.g. {args.start}+00:00")
    if args.count < 0:
        raise ValueError("count must not be negative")
    _stdout_open(args.output)
    meter = _simulated_meter(args, SimulatedMeter, start)
    if args.count and not meter.clock_lasts(args.count):
        raise ValueError(
            f"{args.count} telegrams {meter.interval:g} s apart run past {LAST_YEAR}, where the "
            "meter's two-digit year ends"
        )
    first = meter.next_telegram()
    channel = _noisy_channel(args, first)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        n = 0
        next_at = time.monotonic()
        while not args.count or n < args.count:
            if n and not meter.clock_lasts(1):  # run forever: until the meter's clock ends
                sys.stderr.write(f"simulate: the meter's clock ends with {LAST_YEAR}\n")
                break
            if args.realtime:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += meter.interval
            telegram = first if n == 0 else meter.next_telegram()
            out.write(telegram if channel is None else channel.transmit(telegram))
            if args.realtime:
                out.flush()
            n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
        if channel is not None:
            sys.stderr.write(f"simulate: {channel.summary()}\n")
    return 0


def _simulated_meter(
    args: argparse.Namespace, plain: type[SimulatedMeter], start: datetime | None
) -> SimulatedMeter:
    """The meter `simulate` runs: an encrypted flavour sealed under --key."""
    from agent.core.gcm import LUXEMBOURG_AUTHENTICATION_KEY, GcmKeys
    from agent.encryptedmeter import ENCRYPTED_FLAVOURS, EncryptedMeter
    from agent.meterkeys import AUTHENTICATION, DECRYPTION, parse_key

    options = {"start": start, "interval": args.interval, "seed": args.seed}
    if args.flavour not in ENCRYPTED_FLAVOURS:
        if args.key or args.authentication_key:
            raise ValueError(f"--key is for encrypted flavours ({', '.join(ENCRYPTED_FLAVOURS)})")
        return plain(args.flavour, **options)
    if not args.key:
        raise ValueError(f"the {args.flavour} flavour encrypts: give --key (32 hex digits)")
    auth = args.authentication_key
    keys = GcmKeys(
        parse_key(args.key, DECRYPTION, "--key"),
        parse_key(auth, AUTHENTICATION, "--authentication-key")
        if auth
        else LUXEMBOURG_AUTHENTICATION_KEY,
    )
    return EncryptedMeter(args.flavour, keys, **options)


def _noisy_channel(args: argparse.Namespace, telegram: bytes) -> NoisyChannel | None:
    """The line's noise from --noise-rate and --noise (which overrides single modes, or names the
    bad-line profile), or None."""
    from agent.encryptedmeter import ENCRYPTED_FLAVOURS, cipher_channel
    from agent.noisyline import (
        ALL_MODES,
        BAD_LINE,
        NoisyChannel,
        applicable_modes,
        bad_line_rates,
        check_rates,
        parse_rate,
        parse_rates,
        spread_rate,
    )

    if args.noise is None and args.noise_rate is None:
        return None
    # Its own random stream: the meter's values are the same with and without noise.
    seed = f"noise-{args.seed}"
    if args.flavour in ENCRYPTED_FLAVOURS:
        return cipher_channel(args.noise, args.noise_rate, seed)
    if args.noise == BAD_LINE:
        if args.noise_rate is not None:
            raise ValueError(f"--noise {BAD_LINE} is a whole line: it takes no --noise-rate")
        return NoisyChannel(bad_line_rates(telegram), seed)
    rates: dict[str, float] = {}
    if args.noise_rate is not None:
        rate = parse_rate(args.noise_rate, "noise rate")
        rates.update(spread_rate(rate, applicable_modes(telegram)))
    if args.noise is not None:
        explicit = parse_rates(args.noise)
        modes = applicable_modes(telegram, ALL_MODES)
        for mode, rate in explicit.items():
            if rate and mode not in modes:
                raise ValueError(f"noise mode {mode} does not apply to {args.flavour} telegrams")
        rates.update(explicit)
    check_rates(rates)
    return NoisyChannel(rates, seed)


def _settings(args: argparse.Namespace) -> Settings:
    from agent import config
    from agent.logs import register_secret
    from agent.meterkeys import source_keys

    try:
        settings = config.load(vars(args))
        MeterZone(settings.meter_timezone)
        for source in settings.sources:
            source_keys(settings, source)  # a bad key: one line now (and never shown)
    except config.ConfigError as exc:
        raise ValueError(str(exc)) from None
    if settings.influx is not None:
        register_secret(settings.influx.token)
        register_secret(settings.influx.password)
    register_secret(settings.mqtt_password)
    register_secret(settings.homewizard_token)
    return settings


def run_command(args: argparse.Namespace) -> int:
    from agent.logs import configure
    from agent.run import run

    settings = _settings(args)
    configure(settings.log_level)
    return run(settings)


def check_config_command(args: argparse.Namespace) -> int:
    """Print the effective configuration, then try every source and the InfluxDB connection."""
    from agent.config import describe
    from agent.logs import configure

    settings = _settings(args)
    configure("error")  # the checks report for themselves; keep retry chatter out
    for line in describe(settings):
        print(line)
    if args.no_test:
        return 0
    print("\n# checks")
    ok = True
    for source in settings.sources:
        passed, message, link = _check_source(settings, source.url, source, args.wait)
        ok &= passed
        print(f"{'ok' if passed else 'FAILED'}: source {message}")
        print(f"  link: {link}")
    if settings.influx is None:
        print("ok: no InfluxDB configured; readings stay in the local store")
    else:
        from agent.sinks.influx import WriteError, make_writer

        writer = make_writer(settings.influx)
        try:
            print(f"ok: {writer.check()}")
        except WriteError as exc:
            ok = False
            print(f"FAILED: {exc}")
        finally:
            writer.close()
    if settings.mqtt_url is not None:
        from agent.mqttclient import check_broker

        passed, message = check_broker(settings)
        ok &= passed
        print(f"{'ok' if passed else 'FAILED'}: {message}")
    sys.stdout.flush()
    return 0 if ok else 1


def _check_source(
    settings: Settings, url: str, source: SourceSettings, wait: float
) -> tuple[bool, str, str]:
    """(passed, what came, the link diagnosis in plain words)."""
    import threading

    from agent.core.diagnose import LinkDiagnosis
    from agent.meterkeys import source_keys
    from agent.redact import mask_url
    from agent.sources import open_source

    stop = threading.Event()
    opened = open_source(
        url,
        stop,
        serial_settings=source.serial_settings,
        read_timeout=settings.read_timeout,
        name=source.name,
        settings=settings,
    )
    keys = source_keys(settings, source)
    zone = MeterZone(settings.meter_timezone)
    pipeline = open_pipeline(keys, zone=zone, max_frame=settings.max_frame)
    sniffer = EncryptionSniffer() if keys is None else None
    link = LinkDiagnosis()
    deadline = time.monotonic() + wait
    shown = mask_url(url)
    try:
        while time.monotonic() < deadline:
            data = opened.read()
            results = pipeline.close() if data is None else pipeline.feed(data)
            link.update(
                results,
                bytes_in=pipeline.framer.bytes_in,
                masking=pipeline.parity.masking,
                data=data or b"",
            )
            for result in results:
                if result.telegram is not None:
                    came = f"{shown}: telegram from meter {result.telegram.meter} ({result.status})"
                    decrypted = ", the frame decrypted and its tag checked" if keys else ""
                    return True, came + decrypted, link.describe()
                if result.reason in (WRONG_KEY, WRONG_AUTHENTICATION_KEY):
                    return False, f"{shown}: {PROBLEMS[result.reason]}", link.describe()
            if sniffer is not None and data and sniffer.feed(data):
                return False, f"{shown}: {NO_KEY}", link.describe()
            if data is None:
                return False, f"{shown}: ended without a valid telegram", link.describe()
        problem = opened.hint or opened.last_error or "no bytes arrived"
        return False, f"{shown}: no telegram within {wait:g} s ({problem})", link.describe()
    finally:
        opened.close()


def export_command(args: argparse.Namespace) -> int:
    from agent.config import resolve
    from agent.export import export
    from agent.replay import open_output

    path = resolve("data_dir", args.data_dir) / "store.sqlite"
    if not path.is_file():
        raise ValueError(f"no local store at {path} (is --data-dir right?)")
    _stdout_open(args.output)
    out = open_output(args.output)
    try:
        count = export(path, args.format, out)
    finally:
        if args.output != "-":
            out.close()
        else:
            out.flush()
    sys.stderr.write(f"export: {count} points from {path}\n")
    return 0


def healthcheck_command(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from agent.config import resolve

    host, port = resolve("metrics_address", args.metrics_address)  # ConfigError: one line
    # Listening everywhere: ask over loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz/live"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            healthy = response.status == 200
    except urllib.error.HTTPError as exc:  # 503: the agent says why
        reasons = "; ".join(exc.read(4096).decode(errors="replace").split("\n")[1:]).strip("; ")
        sys.stderr.write(f"p1-agent: unhealthy: {url}: {reasons or exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"p1-agent: unhealthy: {url}: {exc}\n")
        return 1
    return 0 if healthy else 1
