# binauthz-operator container image: a static binary on an empty base, run as non-root.
#
# Build stage: Rust on Alpine links against musl, so the binary is fully static and needs
# no libc in the runtime image.
FROM rust:1.95-alpine3.22 AS build
# Alpine's repositories keep only the current build of each package, so an exact version
# pin breaks rebuilds; the base image tag pins the Alpine release instead.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
# The whole workspace must be present for cargo to read it, the emulator crate included,
# but the image is built without the `emulator` feature: the production binary has neither
# the `emulator` subcommand nor `check --emulator`, and none of the emulator's code.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY crates ./crates
RUN cargo build --release --locked --no-default-features --bin binauthz-operator \
 && install -D -m 0555 target/release/binauthz-operator /out/binauthz-operator

# Runtime stage: nothing but the binary and the CA bundle for Google APIs (TLS via rustls).
# No shell, no package manager; UID/GID 65532 ("nonroot"); works with a read-only root
# filesystem and no capabilities (see deploy/).
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/binauthz-operator /binauthz-operator
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/binauthz-operator"]
CMD ["controller"]
