# Static (musl) arke-dr binaries, for copying into any container (the API's, or Kubo's own).
#
#   docker build --target binaries --output type=local,dest=dist .     # dist/<binary>, no image
#   # in another Dockerfile:
#   COPY --from=arke-dr-binaries / /usr/local/bin/                      # after: docker build -t arke-dr-binaries --target binaries .
#
# The same build without Docker: scripts/install.sh --static (or cargo build --release
# --target x86_64-unknown-linux-musl -p arke-dr).
FROM rust:1.95-bookworm AS build
# musl-tools: ring (the TLS of the S3 client) compiles C and assembly for the musl target.
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p arke-dr \
 && mkdir /out \
 && cd target/x86_64-unknown-linux-musl/release \
 && cp build-snapshot export-car restore-from-car verify-snapshot verify-car prune-snapshots \
       fetch-archive verify-entity inspect-archive daily-backup weekly-verify restore-drill \
       hourly-snapshot dr-status dr-server /out/

FROM scratch AS binaries
COPY --from=build /out/ /

# A minimal image with the tools on PATH (docker build -t arke-dr --target tools .), e.g. as a
# one-off job container beside Kubo:
#   docker run --rm --network <compose network> -e IPFS_API_URL=http://ipfs:5001/api/v0 \
#     -v /var/lib/arke-dr:/var/lib/arke-dr arke-dr build-snapshot
# or dr-server as a service of the compose file (docs/operations.md "dr-server"):
#   docker run -d --network <compose network> -e IPFS_API_URL=http://ipfs:5001/api/v0 \
#     -e DR_SERVER_TOKEN -v /var/lib/arke-dr:/var/lib/arke-dr:ro --user 1000:1000 \
#     arke-dr dr-server --listen 0.0.0.0:8090
FROM debian:bookworm-slim AS tools
# The CA roots: the S3 client (rustls with the system's roots, through rustls-native-certs)
# finds none in debian-slim, and every TLS connection to S3 would fail.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
ENV SNAPSHOTS_DIR=/var/lib/arke-dr/snapshots BACKUPS_DIR=/var/lib/arke-dr/backups \
    ARKE_STATE_DIR=/var/lib/arke-dr/state
# dr-server's port, when the image runs it (its default address is 127.0.0.1:8090: give
# --listen 0.0.0.0:8090 in a container).
EXPOSE 8090
