# syntax=docker/dockerfile:1
#
# gridlink-cloud: a static musl binary on distroless, as a non-root user.
#
#   docker build -t gridlink-cloud .
#   docker run --rm -p 8080:8080 -e GRIDLINK_MQTT_HOST=... gridlink-cloud
#   docker run --rm gridlink-cloud migrate          (any subcommand: ENTRYPOINT is the binary)
#
# The build step is the same command the test command can run without a
# container engine:
#   cargo build --release --locked -p gridlink-cloud --target x86_64-unknown-linux-musl
# (musl-tools for ring's C, `rustup target add x86_64-unknown-linux-musl`).
# Checked on the dev machine: `file` says "static-pie linked"; 69 MB with
# the release profile's line tables, 12.7 MB stripped (what the image holds).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools binutils curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# Cache mounts (BuildKit) keep the registry and target dir between builds;
# the binary is copied out within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gridlink-cloud --target x86_64-unknown-linux-musl \
    && strip -o /gridlink-cloud target/x86_64-unknown-linux-musl/release/gridlink-cloud

# Trust anchors the service pins in AWS (terraform/modules/ecs-service and
# secrets): Amazon Root CA 1 for AWS IoT Core (GRIDLINK_MQTT_CA) and the RDS
# CA bundle (sslmode=verify-full&sslrootcert=... in GRIDLINK_DATABASE_URL).
# Readable by nonroot (0644).
RUN mkdir -p /certs \
    && curl -fsSL --proto '=https' -o /certs/AmazonRootCA1.pem https://www.amazontrust.com/repository/AmazonRootCA1.pem \
    && curl -fsSL --proto '=https' -o /certs/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    && grep -q 'BEGIN CERTIFICATE' /certs/AmazonRootCA1.pem \
    && grep -q 'BEGIN CERTIFICATE' /certs/rds-global-bundle.pem \
    && chmod 0644 /certs/*.pem

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="gridlink-cloud" \
      org.opencontainers.image.description="gridlink cloud: MQTT ingest, storage and HTTP API" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /certs/AmazonRootCA1.pem /certs/rds-global-bundle.pem /etc/ssl/certs/
COPY --from=builder /gridlink-cloud /gridlink-cloud
# The default SQLite database (sqlite://gridlink.db) lands in nonroot's home;
# in AWS GRIDLINK_DATABASE_URL points at RDS and the root file system is
# read-only.
WORKDIR /home/nonroot
USER nonroot
ENV GRIDLINK_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080
# distroless has no shell, curl or wget: the binary probes itself
# (`gridlink-cloud health` GETs /health on GRIDLINK_HTTP_LISTEN, exit 0 on 200).
# In AWS the ALB target group checks GET /health as well (terraform/modules/alb).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["/gridlink-cloud", "health"]
# ENTRYPOINT is the binary and CMD its subcommand, so the scheduled export
# (terraform/modules/export-schedule) and `migrate` run in the same image.
ENTRYPOINT ["/gridlink-cloud"]
CMD ["serve"]
