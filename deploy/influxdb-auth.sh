#!/bin/bash
# Run by the compose service `influxdb-auth` on every `up`, before the agent and Grafana start:
# from the operator token (INFLUX_TOKEN, which only this service and InfluxDB hold) make
# - for the agent, an API token that may only write to the bucket, once, into AGENT_TOKEN_FILE
#   on the agent-token volume (readable by the agent's user, AGENT_UID, alone; delete the volume
#   to make a new one);
# - for Grafana, a v1 (InfluxQL) login `grafana` that may only read the bucket, password
#   GRAFANA_INFLUX_PASSWORD, once.
# The influx CLI takes INFLUX_HOST, INFLUX_TOKEN and INFLUX_ORG from the environment.
set -euo pipefail

token_file=$AGENT_TOKEN_FILE

# The first "KEY": "value" of the influx CLI's --json output (indented with tabs).
json_value() {
    sed -n "s/^[[:space:]]*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1
}

bucket_id=$(influx bucket list --name "$INFLUX_BUCKET" --json | json_value id)
if [ -z "$bucket_id" ]; then
    echo "influxdb-auth: no bucket $INFLUX_BUCKET in org $INFLUX_ORG" >&2
    exit 1
fi

if [ -s "$token_file" ]; then
    echo "influxdb-auth: the agent's token exists"
else
    token=$(influx auth create --write-bucket "$bucket_id" \
        --description "p1-agent: write $INFLUX_BUCKET" --json | json_value token)
    if [ -z "$token" ]; then
        echo "influxdb-auth: influx auth create gave no token" >&2
        exit 1
    fi
    (umask 077 && printf '%s' "$token" > "$token_file.new")
    chown "$AGENT_UID" "$token_file.new"
    mv "$token_file.new" "$token_file"
    echo "influxdb-auth: made the agent's write-only token for bucket $INFLUX_BUCKET"
fi

# A v1 authorization's token is its user name.
v1_auths=$(influx v1 auth list --json)
if grep -q '"token": *"grafana"' <<< "$v1_auths"; then
    echo "influxdb-auth: Grafana's login exists"
else
    influx v1 auth create --username grafana --password "$GRAFANA_INFLUX_PASSWORD" \
        --read-bucket "$bucket_id" --description "Grafana: read $INFLUX_BUCKET" > /dev/null
    echo "influxdb-auth: made Grafana's read-only login for bucket $INFLUX_BUCKET"
fi
