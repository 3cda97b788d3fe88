"""Time from a telegram's last byte on the link to its state message at an MQTT subscriber.

    python bench/bench_mqtt_latency.py [--count 300] [--interval 1.0] [--warmup 5]

A simulated DSMR 5 meter (in this process) writes telegrams on a fixed schedule into a TCP
connection that `p1-agent run` reads through `socket://`; the agent (no InfluxDB: the local
store) publishes to a Mosquitto broker on loopback, and a client in this process subscribed to
`p1-agent/+/state` takes each state message. The clock starts when the telegram's last byte has
been written (`sendall` returned) and stops when paho hands the subscriber the message with that
telegram's meter time; both on this process's monotonic clock, nothing subtracted. The first
`--warmup` telegrams (the broker connection being made, discovery sent) are not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchenv import header, log
from liveagent import Feeder, agent_process, command_line, connect, meter_link
from mqttkit import Received, watch
from servers import mosquitto

from agent.sources.serial import READ_POLL

TITLE = "Live agent: latency from a telegram's last byte to its MQTT state message"
GIVE_UP = 60.0  # seconds without the next state message end the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="telegrams measured")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between telegrams")
    parser.add_argument("--warmup", type=int, default=5, help="telegrams not counted")
    args = parser.parse_args()
    head = header(TITLE, command_line())
    total = args.warmup + args.count
    arrived: dict[int, float] = {}  # meter time (Unix seconds) → arrival

    def on_message(message: Received) -> None:
        meter_time = json.loads(message.payload)["meter_time"]
        arrived.setdefault(int(datetime.fromisoformat(meter_time).timestamp()), message.at)

    with (
        tempfile.TemporaryDirectory(prefix="p1-bench-mqtt-") as tmp,
        mosquitto(Path(tmp, "mosquitto")) as broker,
        meter_link("tcp") as link,
        agent_process(Path(tmp), {"P1_SOURCE": link.source, "P1_MQTT_URL": broker.url}) as agent,
    ):
        watcher = watch(broker.url, "p1-agent/+/state")
        watcher.on_message = on_message
        connect(agent, link)
        feeder = Feeder(link, count=total, interval=args.interval)
        feeder.start()
        log(f"{total} telegrams, one every {args.interval:g} s, into {link.source}")
        last_progress = time.monotonic()
        while len(arrived) < total:
            if feeder.error is not None:
                sys.exit(f"writing to the agent failed: {feeder.error}")
            if time.monotonic() - last_progress > GIVE_UP:
                sys.exit(f"no state message for {GIVE_UP:.0f} s ({len(arrived)}/{total})")
            before = len(arrived)
            time.sleep(0.2)
            if len(arrived) != before:
                last_progress = time.monotonic()
                if len(arrived) // 50 != before // 50:
                    log(f"{len(arrived)}/{total} state messages")
        feeder.join()
        watcher.close()
        dropped = agent.value("p1_mqtt_dropped_messages_total")

    latency = [arrived[sent.stamp] - sent.at for sent in feeder.sent]
    measured, warm = latency[args.warmup :], latency[: args.warmup]
    cuts = statistics.quantiles(measured, n=100, method="inclusive")
    p50, p90, p99 = cuts[49], cuts[89], cuts[98]
    print(head)
    print(
        f"{args.count} simulated DSMR 5 telegrams (one every {args.interval:g} s, after "
        f"{args.warmup} not counted) written in one piece into a TCP connection the agent reads "
        "through `socket://`; `p1-agent run` with default settings and `P1_MQTT_URL` publishes "
        "to Mosquitto 2.0 on loopback (QoS 1, retained); a paho client in the benchmark "
        "subscribed to `p1-agent/+/state`. Latency = from the telegram's last byte written to "
        "the subscriber's callback for the state message with its meter time; nothing "
        f"subtracted. MQTT messages the agent dropped: {dropped:.0f}. The `socket://` source "
        f"gathers one read for up to {1000 * READ_POLL:.0f} ms before the pipeline sees the "
        "bytes, so latencies spread evenly from the minimum (the decode, the spool commit and "
        "the MQTT round trip) to about that much more.\n"
    )
    print("| telegrams | p50 ms | p90 ms | p99 ms | max ms | min ms | mean ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(measured)} | **{1000 * p50:.1f}** | {1000 * p90:.1f} | **{1000 * p99:.1f}** "
        f"| {1000 * max(measured):.1f} | {1000 * min(measured):.1f} "
        f"| {1000 * statistics.mean(measured):.1f} |"
    )
    print()
    print("Warm-up telegrams (not counted): " + ", ".join(f"{1000 * s:.0f} ms" for s in warm))
    print()


if __name__ == "__main__":
    main()
