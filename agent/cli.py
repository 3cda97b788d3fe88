"""Command line: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from datetime import datetime

from agent.config import OPTIONS, OPTIONS_BY_KEY, SOURCE, Option, Settings, parse_bool
from agent.encryptedmeter import ENCRYPTED_FLAVOURS
from agent.noisyline import ALL_MODES as NOISE_MODES
from agent.noisyline import BAD_LINE
from agent.simulate import FLAVOURS

EPILOG = "Every `run` option is also read from a P1_* environment variable (see README)."
RUN_EPILOG = """\
Every option is also read from the environment variable shown, and from the TOML file given by
--config (keys as in `p1-agent check-config`); flags win over the environment, which wins over
the file. Secrets only from the environment or files: P1_INFLUX_TOKEN or P1_INFLUX_TOKEN_FILE
(v2), P1_INFLUX_PASSWORD or P1_INFLUX_PASSWORD_FILE (v1), P1_MQTT_PASSWORD[_FILE] (MQTT),
P1_HOMEWIZARD_TOKEN[_FILE] (HomeWizard API v2), P1_DECRYPTION_KEY[_FILE] and
P1_AUTHENTICATION_KEY[_FILE] (encrypted meters).

Sources (repeat --source for several meters; P1_SOURCE takes them separated by spaces):
  /dev/ttyUSB0, /dev/p1           a serial device (USB P1 cable)
  socket://HOST:PORT              a TCP bridge (ser2net, ESP-Link, Tasmota)
  rfc2217://HOST:PORT             an RFC 2217 serial server
  file:PATH[,realtime|,follow]    a capture, read at once, paced like the meter, or followed
  simulator[:FLAVOUR][,noise=R]   the built-in simulated meter (default dsmr5), optionally
                                  noisy: R a share of telegrams, or bad-line (4 of 5 damaged);
                                  FLAVOUR as for `p1-agent simulate --flavour`
  homewizard://HOST               a HomeWizard P1 dongle's local API (v2 with a token)
  mqtt://[USER@]HOST[:PORT]/TOPIC raw telegrams a bridge publishes to MQTT (or mqtts://)
  NAME=URL                        the same, with readings tagged meter=NAME
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p1-agent",
        description="Read, repair and deliver smart-meter P1 telegrams (DSMR and its variants).",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_agent_parsers, _tool_parsers, _replay_parser, _simulate_parser):
        add(sub)
    return parser


def _agent_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`run` and `check-config`: every setting of the option table as a flag."""
    run = sub.add_parser(
        "run",
        help="the live agent: meters → spool → InfluxDB, with Prometheus metrics",
        description="Read meters, repair what the line damaged, keep every accepted reading in\n"
        "the spool (DATA_DIR/store.sqlite) and deliver it to InfluxDB when one is configured;\n"
        "serve Prometheus /metrics and /healthz.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _agent_options(run)

    check = sub.add_parser(
        "check-config",
        help="print the effective configuration (secrets masked) and test the connections",
        description="Print the configuration `run` would use, with where each value came from\n"
        "and secrets masked, then open every source until a telegram arrives and test the\n"
        "InfluxDB connection and credentials. Exit status 1 when a test fails.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _agent_options(check)
    check.add_argument(
        "--no-test", action="store_true", help="only print the configuration; connect to nothing"
    )
    check.add_argument(
        "--wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for a telegram from each source (default: 30)",
    )


def _tool_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`export` and `healthcheck`: the store and the metrics address of a configured agent."""
    export = sub.add_parser(
        "export",
        help="write the readings kept in the local store as line protocol, JSONL or CSV",
        description="Export the points in DATA_DIR/store.sqlite (the embedded store, or what the "
        "spool still holds for InfluxDB), oldest first. Read-only: the store keeps them.",
    )
    data_dir = OPTIONS_BY_KEY["data_dir"]
    export.add_argument(
        data_dir.flag,
        metavar=data_dir.metavar,
        help=f"the agent's data directory ({data_dir.env}; default: ./{data_dir.default})",
    )
    _format_and_output(export, ("line-protocol", "jsonl", "csv"), ", which `influx write` imports")

    health = sub.add_parser(
        "healthcheck",
        help="exit 0 while the running agent is alive (/healthz/live, for Docker's HEALTHCHECK)",
        description="Ask the agent's /healthz/live on the metrics address; exit 0 if it is alive. "
        "A source or InfluxDB in trouble does not fail it (a restart would not mend them): "
        "/healthz says so.",
    )
    address = OPTIONS_BY_KEY["metrics_address"]
    health.add_argument(
        address.flag,
        metavar=address.metavar,
        help=_help(address, "where the agent serves /healthz"),
    )


def _replay_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay",
        help="convert raw captures and terminal logs to CSV, JSONL or line protocol",
        description="Decode raw captures (serial dumps, PuTTY logs, gzip files; `-` for stdin) "
        "and write one record per telegram. A summary goes to stderr.",
    )
    replay.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="capture files, gzip or plain, or a raw-capture directory; - for stdin",
    )
    _format_and_output(replay, ("csv", "jsonl", "line-protocol"))
    replay.add_argument(
        "--meter-timezone",
        default=Settings.meter_timezone,
        metavar="ZONE",
        help=f"meter clock zone (default: {Settings.meter_timezone}, CET rules and Europe/Dublin "
        "for the Irish Iskra; Lithuania: Europe/Vilnius)",
    )
    replay.add_argument(
        "--start",
        type=_iso_time,
        metavar="TIME",
        help="for meters without a clock: the time of the first telegram (ISO 8601 with offset)",
    )
    replay.add_argument(
        "--interval",
        type=_seconds,
        metavar="SECONDS",
        help="for meters without a clock: seconds between telegrams, counted from --start or "
        "from a PuTTY log's own start",
    )
    replay.add_argument(
        "--max-frame",
        type=int,
        default=Settings.max_frame,
        metavar="BYTES",
        help=f"drop frames longer than this (default: {Settings.max_frame})",
    )
    replay.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    replay.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="replay N files at once, each on its own (output in input order; default: 1)",
    )


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = sub.add_parser(
        "simulate",
        help="a simulated meter writing telegrams to stdout or a file",
        description="Generate telegrams of a simulated meter of any flavour the decoder knows, "
        "optionally through a noisy line (--noise, --noise-rate; a count of the corrupted "
        f"telegrams then goes to stderr). --noise {BAD_LINE} is a real bad line: 4 telegrams "
        "of 5 damaged, mostly by cleared bits.",
    )
    flavours = (*FLAVOURS, *ENCRYPTED_FLAVOURS)
    simulate.add_argument(
        "--flavour",
        choices=flavours,
        default="dsmr5",
        metavar="FLAVOUR",
        help=f"meter flavour: {', '.join(flavours)} (default: dsmr5); smarty encrypts (--key)",
    )
    simulate.add_argument(
        "--key",
        metavar="HEX",
        help="smarty: the meter's decryption key, 32 hex digits (a test meter's, not yours)",
    )
    simulate.add_argument(
        "--authentication-key",
        metavar="HEX",
        help="smarty: its authentication key (default: the Luxembourg Smarty's public one)",
    )
    simulate.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="stop after N telegrams (default: run forever)",
    )
    simulate.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="meter interval (default: the flavour's, 1 for dsmr5, 10 for hu)",
    )
    simulate.add_argument(
        "--realtime",
        action="store_true",
        help="pace output at the interval instead of as fast as possible",
    )
    simulate.add_argument(
        "--start",
        metavar="ISO",
        help="meter time of the first telegram (default: 2024-06-01T00:00:00Z)",
    )
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    simulate.add_argument(
        "--noise",
        metavar=f"MODE=RATE[,MODE=RATE...]|{BAD_LINE}",
        help="corrupt telegrams: each meets MODE with probability RATE (their sum at most 1); "
        f"modes: {', '.join(NOISE_MODES)}. {BAD_LINE}: the mix of a real bad line (bit clears, "
        "lost `/`, drop + substitution, overruns in the 0xFF run, noise-made `!` and `/`, "
        "merged telegrams), 4 of 5 telegrams damaged",
    )
    simulate.add_argument(
        "--noise-rate",
        metavar="RATE",
        help="corrupt this share of the telegrams, spread equally over every mode from "
        "start_mangled to double_predicted the flavour has (ff_run is hu only); --noise MODE=RATE "
        "then overrides single modes",
    )
    _output(simulate)


def _format_and_output(
    parser: argparse.ArgumentParser, formats: tuple[str, ...], why: str = ""
) -> None:
    """--format, the first of `formats` by default, and --output."""
    parser.add_argument(
        "--format",
        choices=formats,
        default=formats[0],
        help=f"output format (default: {formats[0]}{why})",
    )
    _output(parser)


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="output file, - for stdout (default)"
    )


def _help(option: Option, text: str | None = None) -> str:
    """The option's help (or `text`), its variable and its default."""
    default = f"; default: {option.default}" if option.default not in (None, "") else ""
    return f"{text or option.help} ({option.env}{default})"


def _agent_options(parser: argparse.ArgumentParser) -> None:
    """`run` and `check-config` share every option, generated from the one table in config."""
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (P1_CONFIG)")
    parser.add_argument(SOURCE.flag, action="append", metavar=SOURCE.metavar, help=_help(SOURCE))
    for option in OPTIONS:
        if option.parse is parse_bool:
            parser.add_argument(
                option.flag,
                dest=option.dest,
                action=argparse.BooleanOptionalAction,
                help=_help(option),
            )
        else:
            parser.add_argument(
                option.flag, dest=option.dest, metavar=option.metavar, help=_help(option)
            )


def _iso_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with its UTC offset."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs an offset, e.g. {text}+00:00")
    return when


def _seconds(text: str) -> float:
    """An argparse type: a time between telegrams, more than 0 and at most a day."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 86400]")
    return seconds


def _fail(message: str) -> int:
    sys.stderr.write(f"p1-agent: error: {message}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "replay":
            from agent.commands import replay_command

            return replay_command(args)
        if args.command == "simulate":
            from agent.commands import simulate_command

            return simulate_command(args)
        if args.command == "export":
            from agent.commands import export_command

            return export_command(args)
        if args.command == "healthcheck":
            from agent.commands import healthcheck_command

            return healthcheck_command(args)
        if args.command == "check-config":
            from agent.commands import check_config_command

            return check_config_command(args)
        from agent.commands import run_command

        return run_command(args)
    except ValueError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader went away (`| head`): not an error; keep the interpreter from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        name = f" {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{':' if name else ''}{name}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
