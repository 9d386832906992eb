#!/usr/bin/env bash
# Build the pgdrill container image (image/Dockerfile) from the local Debian root filesystem
# image that ci/setup.sh makes, with the Debian package ci/package.sh builds installed in it
# (the image and the package hold the same files). Usage: bash ci/image.sh [TAG]
# (default pgdrill:VERSION)
#   PGDRILL_BIN   an already built binary to package (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' engine/Cargo.toml | head -n 1)
tag="${1:-pgdrill:$version}"
base="${PGDRILL_IMAGE_BASE:-pgdrill/debian-postgresql:15}"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  echo "image: the base image $base is missing: run bash ci/setup.sh first" >&2
  exit 3
fi
# Only the Dockerfile and the package go to the daemon, never the repository's target/.
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
deb=$(bash ci/package.sh "$ctx/dist")
cp image/Dockerfile "$ctx/"
mv "$deb" "$ctx/pgdrill.deb"
rm -rf "$ctx/dist"
DOCKER_BUILDKIT=0 docker build -q --build-arg BASE="$base" -t "$tag" "$ctx" >/dev/null
echo "$tag"
