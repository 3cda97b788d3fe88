#!/bin/bash
# Run once by the influxdb:2 image after its setup (mounted into /docker-entrypoint-initdb.d):
# map an InfluxQL database of the bucket's name to the bucket, so the Grafana dashboards'
# InfluxQL queries (database = bucket name) find the agent's points. Recent 2.x releases also map
# every bucket virtually; an explicit mapping works on every 2.x release.
set -euo pipefail

influx v1 dbrp create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    --rp autogen \
    --default
