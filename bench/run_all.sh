#!/usr/bin/env bash
# Runs the benchmarks; RESULTS.md is replaced only when all pass (else see RESULTS.md.new).
# The live-agent ones run with their defaults: 600 s measured at one telegram a second, 300
# telegrams timed, 200 meters for 180 s (with warm-ups, about 20 min of the total).
cd "$(dirname "$0")/.." && { printf '# Benchmark results\n\nWritten by `bench/run_all.sh`; every section names its command, machine, code and date.\n\n' && python bench/bench_decode.py && python bench/bench_replay.py && python bench/bench_live_cpu.py && python bench/bench_hostile.py && python bench/bench_repair.py && python bench/bench_bad_line.py && python bench/bench_encrypted.py && python bench/bench_agent_resources.py && python bench/bench_agent_resources.py --mode store && python bench/bench_agent_latency.py && python bench/bench_agent_fleet.py && python bench/bench_mqtt_latency.py; } > bench/RESULTS.md.new && mv bench/RESULTS.md.new bench/RESULTS.md
