# Multi-stage build: a static-ish release binary on a distroless base, running as non-root.
#   docker build -t oncall-relay .
#   docker run -p 8880:8880 -e ONCALL_RELAY_APP__AUTH_TOKEN=change-me -v relay-data:/data oncall-relay
#   (your own settings: -v ./config.yml:/etc/oncall-relay/config.yml:ro)
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that source changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src examples && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > examples/loadgen.rs \
    && cargo build --release --locked --bin oncall-relay \
    && rm -rf src examples
COPY migrations migrations
COPY src src
COPY examples examples
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin oncall-relay

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/oncall-relay /usr/local/bin/oncall-relay
# The image's defaults live in its configuration file, not in ENV: an environment variable
# would beat a mounted config.yml, the file being the lower layer.
COPY deploy/docker/config.yml /etc/oncall-relay/config.yml
# SQLite lives in /data by default; mount a volume there (or use PostgreSQL).
WORKDIR /data
EXPOSE 8880
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/oncall-relay"]
CMD ["--config", "/etc/oncall-relay/config.yml", "serve"]
