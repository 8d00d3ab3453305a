#!/usr/bin/env bash
# Builds the quorate-testnet:dev image that testnet/docker-compose.yml runs:
# statically linked release binaries (glibc, crt-static) in a FROM-scratch image.
# Usage: testnet/build-images.sh        (from anywhere in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
# A separate --target directory keeps these flags from invalidating the ordinary
# debug and release builds; cargo reuses this build on the next run.
# No fault injection (the testnet's `fault-injection` feature) in an image: a
# node there refuses a `[danger]` config.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" \
  -p quorate-node -p quorate-coordinator -p quorate-ceremony -p quorate-testnet --bins

context=target/docker-context
rm -rf "$context"
mkdir -p "$context"
for bin in quorate-node quorate-coordinator quorate-ceremony quorate-testnet; do
  # Stripped: symbols would triple the image for nothing a container uses.
  strip -o "$context/$bin" "target/$target/release/$bin"
done
cp testnet/Dockerfile "$context/Dockerfile"
# The legacy builder: BuildKit (buildx) may not be installed, and FROM scratch
# with one COPY needs nothing it adds.
DOCKER_BUILDKIT=0 docker build --quiet -t quorate-testnet:dev "$context"
docker image ls quorate-testnet:dev --format 'built {{.Repository}}:{{.Tag}} ({{.Size}})'
