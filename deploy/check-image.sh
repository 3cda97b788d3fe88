#!/bin/bash
# Build the Dockerfile and run the image on the simulator, hardened as docker-compose.yml runs
# it, and check what a user relies on: a non-root user, /healthz, `p1-agent healthcheck`,
# telegrams counted in /metrics, a clean exit on stop, the image size. Not part of CI: it needs a
# running docker or podman (without one it says so and exits 0).
#
#   deploy/check-image.sh
#   BASE_IMAGE=localhost/debian-bookworm-python:3.11 deploy/check-image.sh
#
# BASE_IMAGE (default python:3.11-slim) is any image with Python 3.11 and its venv module. Where
# no registry is reachable, make a stand-in from Debian bookworm's packages (its python3 is 3.11):
#   debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
#       bookworm rootfs http://deb.debian.org/debian
#   tar -C rootfs -c . | podman import - localhost/debian-bookworm-python:3.11
set -euo pipefail

engine=""
for candidate in docker podman; do
    if command -v "$candidate" > /dev/null && "$candidate" info > /dev/null 2>&1; then
        engine=$candidate
        break
    fi
done
if [ -z "$engine" ]; then
    echo "check-image: no running container engine (docker or podman): nothing built or checked"
    exit 0
fi

cd "${0%/*}/.."
base=${BASE_IMAGE:-python:3.11-slim}
image=p1-agent:check
port=${CHECK_PORT:-19224}
container=p1-agent-check-$$
format=()
# OCI images, podman's default, drop the HEALTHCHECK instruction.
[ "$engine" = podman ] && format=(--format docker)

fail() {
    echo "check-image: FAILED: $*" >&2
    "$engine" logs "$container" 2>&1 | tail -n 20 >&2 || true
    exit 1
}
cleanup() {
    "$engine" rm -f "$container" > /dev/null 2>&1 || true
}
trap cleanup EXIT

echo "check-image: $engine $("$engine" version --format '{{.Client.Version}}' 2>/dev/null || true)"
echo "check-image: base image $base"
started=$(date +%s)
"$engine" build "${format[@]}" --build-arg "BASE_IMAGE=$base" -t "$image" . > /dev/null
echo "check-image: built $image in $(($(date +%s) - started)) s"

"$engine" run -d --name "$container" --read-only --tmpfs /tmp --cap-drop ALL \
    --security-opt no-new-privileges -e P1_SOURCE=simulator:dsmr5 \
    -p "127.0.0.1:$port:9224" "$image" > /dev/null

for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
    sleep 0.5
done
healthz=$(curl -fsS "http://127.0.0.1:$port/healthz") || fail "/healthz does not answer"
echo "check-image: /healthz: $healthz"

uid=$("$engine" exec "$container" id -u)
[ "$uid" != 0 ] || fail "the agent runs as root"
echo "check-image: user: $("$engine" exec "$container" id)"

health=$("$engine" exec "$container" p1-agent healthcheck 2>&1) || fail "p1-agent healthcheck: $health"
echo "check-image: p1-agent healthcheck: exit 0${health:+ ($health)}"
if [ "$engine" = podman ]; then
    "$engine" healthcheck run "$container" > /dev/null || fail "the image's HEALTHCHECK fails"
    echo "check-image: the image's HEALTHCHECK: healthy"
fi

telegrams=""
for _ in $(seq 30); do
    telegrams=$(curl -fsS "http://127.0.0.1:$port/metrics" |
        sed -n 's/^p1_telegrams_total{.*result="valid".*} \([0-9.e+]*\)$/\1/p' | head -n 1)
    [ -n "$telegrams" ] && [ "${telegrams%%.*}" -gt 0 ] && break
    sleep 0.5
done
[ -n "$telegrams" ] && [ "${telegrams%%.*}" -gt 0 ] || fail "no valid telegram in /metrics"
echo "check-image: metrics: p1_telegrams_total{result=\"valid\"} $telegrams"

started=$(date +%s)
"$engine" stop -t 30 "$container" > /dev/null
status=$("$engine" inspect --format '{{.State.ExitCode}}' "$container")
[ "$status" = 0 ] || fail "exit status $status on stop"
! "$engine" logs "$container" 2>&1 | grep -q Traceback || fail "a traceback in the log"
echo "check-image: stop: exit 0 in $(($(date +%s) - started)) s, no traceback"

size=$("$engine" image inspect --format '{{.Size}}' "$image")
echo "check-image: image size: $((size / 1000000)) MB"
echo "check-image: OK"
