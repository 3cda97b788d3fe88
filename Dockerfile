# p1-agent in a slim image: a non-root user in the dialout group (for /dev/ttyUSB*), the data
# directory on a volume, and a healthcheck on /healthz.
# BASE_IMAGE: any image with Python 3.11 (`python` and its venv module), for builds where no
# registry is reachable (deploy/check-image.sh says how to make one with debootstrap).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY agent ./agent
# A C compiler for the modules setup.py compiles (the final stage does not carry it); where no
# Debian mirror is reachable the package installs as pure Python, which behaves the same.
RUN (apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev) \
    || echo "no C compiler: p1-agent installs as pure Python"
RUN python -m venv /opt/p1-agent \
    && /opt/p1-agent/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/p1-agent/bin/pip install --no-cache-dir .

FROM ${BASE_IMAGE}
COPY --from=build /opt/p1-agent /opt/p1-agent
# The user's primary group owns the data; dialout opens serial devices without root.
RUN useradd --system --uid 10001 --user-group --groups dialout --home-dir /data p1 \
    && mkdir -p /data && chown p1:p1 /data && chmod 0700 /data
ENV PATH=/opt/p1-agent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    P1_DATA_DIR=/data \
    P1_METRICS_ADDRESS=0.0.0.0:9224
# Inside the container the metrics must be reachable from Prometheus on the compose network;
# publish the port on the host only where you want it (e.g. 127.0.0.1:9224:9224).
USER p1
VOLUME ["/data"]
EXPOSE 9224
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["p1-agent", "healthcheck"]
ENTRYPOINT ["p1-agent"]
CMD ["run"]
