#!/usr/bin/env bash
# Runs the benchmarks; RESULTS.md is replaced only when all pass (else see RESULTS.md.new).
cd "$(dirname "$0")/.." && { printf '# Benchmark results\n\nWritten by `bench/run_all.sh`; every section names its command, machine, code and date.\n\n' && python bench/bench_decode.py && python bench/bench_replay.py && python bench/bench_hostile.py && python bench/bench_repair.py; } > bench/RESULTS.md.new && mv bench/RESULTS.md.new bench/RESULTS.md
