# Multi-stage build: compile archdb, then ship the binary alone on a slim base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/archdb /usr/local/bin/archdb

FROM debian:bookworm-slim
# curl for the compose health check; postgresql so the image can also run the embedded default.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl postgresql \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/archdb /usr/local/bin/archdb
# The starter data and the bundled predictor, loaded into an empty database on first start.
COPY --from=build /src/data /usr/share/archdb/data
ENV ARCHDB_ADDR=0.0.0.0:8080 ARCHDB_DATA_DIR=/var/lib/archdb ARCHDB_SEED_DIR=/usr/share/archdb/data
RUN mkdir -p /var/lib/archdb && chown postgres:postgres /var/lib/archdb
USER postgres
EXPOSE 8080
ENTRYPOINT ["archdb"]
CMD ["serve"]
