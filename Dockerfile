# syntax=docker/dockerfile:1

# ---- build -----------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# The whole context (minus .dockerignore): refinery embeds migrations/ at
# compile time, so they must be present for the build.
COPY . .

# Cache the cargo registry and the target directory between builds (BuildKit);
# the binary is copied out of the cache mount inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tenantd \
    && install -D -m 0755 target/release/tenantd /out/tenantd

# ---- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim

# tenantd talks to PostgreSQL over the network; the image carries only the
# PostgreSQL *client* programs: `legacy backup`, `legacy run` and `legacy
# rollback` call pg_dump and pg_restore (found in /usr/lib/postgresql/15/bin).
# Debian bookworm's postgresql-client-15 dumps servers up to PostgreSQL 15
# (pg_dump refuses a newer server: for one, install its client from PGDG,
# apt.postgresql.org). No server binaries: DATABASE_URL must be set (the
# embedded dev cluster needs a local PostgreSQL installation).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/* \
    && /usr/lib/postgresql/15/bin/pg_dump --version \
    && /usr/lib/postgresql/15/bin/pg_restore --version

RUN groupadd --system --gid 10001 tenantd \
    && useradd --system --uid 10001 --gid tenantd --home-dir /var/lib/tenantd \
       --create-home --shell /usr/sbin/nologin tenantd

COPY --from=builder /out/tenantd /usr/local/bin/tenantd

USER tenantd:tenantd
WORKDIR /var/lib/tenantd

ENV TENANTD_LISTEN=0.0.0.0:8080
EXPOSE 8080

ENTRYPOINT ["tenantd"]
CMD ["serve"]
