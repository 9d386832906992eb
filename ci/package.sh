#!/usr/bin/env bash
# Build the Debian package: bash ci/package.sh [OUTDIR]   (default dist/)
# Prints the .deb's path. What goes in:
#   /usr/bin/pgdrill                                   the release binary (stripped)
#   /usr/share/man/man1/pgdrill*.1.gz                  one page per subcommand (pgdrill man)
#   bash, zsh and fish completions                     (pgdrill completions SHELL)
#   /usr/share/doc/pgdrill/                            README, the shipped runbooks and drills
#                                                      as examples, copyright
#   /usr/share/pgdrill/alerts/                         Prometheus alert rules and their tests
#   /usr/share/doc/pgdrill/examples/systemd/           units from the README's fleet example
# Environment:
#   PGDRILL_BIN   an already built binary to package (default: cargo build --release)
#   PGDRILL_DEB_XZ_LEVEL  xz level of the package (default 6, dpkg-deb's own); the tests
#                 package an unoptimised binary at 0: the same files, and 4 s of CPU where 6
#                 takes 40 s (three packages a test run)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
bin="${PGDRILL_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -q
  bin=target/release/pgdrill
fi
for tool in dpkg-deb dpkg-shlibdeps fakeroot; do
  command -v "$tool" >/dev/null || { echo "package: $tool is missing: apt-get install dpkg-dev fakeroot" >&2; exit 3; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/doc/pgdrill/examples/runbooks" \
  "$root/usr/share/doc/pgdrill/examples/drills" "$root/usr/share/doc/pgdrill/examples/systemd" \
  "$root/usr/share/pgdrill/alerts"
install -m 0755 "$bin" "$root/usr/bin/pgdrill"
strip --strip-unneeded "$root/usr/bin/pgdrill" 2>/dev/null || true
pgdrill="$root/usr/bin/pgdrill"

"$pgdrill" man "$work/man" >/dev/null
for page in "$work"/man/*.1; do
  gzip -9n -c "$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
"$pgdrill" completions bash >"$root/usr/share/bash-completion/completions/pgdrill"
"$pgdrill" completions zsh >"$root/usr/share/zsh/vendor-completions/_pgdrill"
"$pgdrill" completions fish >"$root/usr/share/fish/vendor_completions.d/pgdrill.fish"

install -m 0644 README.md "$root/usr/share/doc/pgdrill/README.md"
install -m 0644 runbooks/*.yaml "$root/usr/share/doc/pgdrill/examples/runbooks/"
install -m 0644 drills/*.yaml "$root/usr/share/doc/pgdrill/examples/drills/"
install -m 0644 fixtures/fleet/pgdrill.fleet.yaml "$root/usr/share/doc/pgdrill/examples/pgdrill.fleet.yaml"
install -m 0644 alerts/*.yml "$root/usr/share/pgdrill/alerts/"
# The units `pgdrill schedule systemd` writes for the example fleet, with the paths the
# package and the README use; copy them to /etc/systemd/system and adapt.
"$pgdrill" schedule systemd fixtures/fleet/pgdrill.fleet.yaml --binary /usr/bin/pgdrill \
  --fleet-path /etc/pgdrill/pgdrill.fleet.yaml --out "$root/usr/share/doc/pgdrill/examples/systemd" >/dev/null
chmod 0644 "$root"/usr/share/doc/pgdrill/examples/systemd/*
cat >"$root/usr/share/doc/pgdrill/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pgdrill
Source: $(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPY

# Shared libraries from the binary itself (libssl, libc), the PostgreSQL client tools of a
# supported major (pg_dump, pg_restore, psql), Docker or a local server for throwaways.
mkdir -p "$work/shlibs/debian"
echo "Source: pgdrill" >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$pgdrill" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
# Debian trixie renamed OpenSSL's library package libssl3t64 (the 64-bit time_t move). On
# 64-bit architectures it also provides libssl3, but not on the 32-bit ones; naming both keeps
# one package installable on bookworm and trixie everywhere.
shlibs=$(printf '%s' "$shlibs" | sed -E 's/libssl3 (\([^)]*\))/libssl3 \1 | libssl3t64 \1/')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: pgdrill
Version: $version
Architecture: $arch
Maintainer: pgdrill developers <pgdrill@users.noreply.github.com>
Installed-Size: $size
Depends: ${shlibs:+$shlibs, }postgresql-client-17 | postgresql-client-16 | postgresql-client-15 | postgresql-client-14 | postgresql-client-13
Recommends: docker.io | postgresql
Section: database
Priority: optional
Homepage: $(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
Description: prove PostgreSQL backups restore
 Runbooks as code for PostgreSQL backups: backups streamed through zstd and
 AES-256-GCM with a manifest, verification by restoring into a throwaway
 server, operator restores with a journal and rollback, drills that measure
 RTO and RPO, JUnit and compliance reports.
CONTROL
mkdir -p "$out"
deb="$out/pgdrill_${version}_${arch}.deb"
fakeroot dpkg-deb --build -Zxz -z"${PGDRILL_DEB_XZ_LEVEL:-6}" --root-owner-group "$root" "$deb.part" >/dev/null
mv "$deb.part" "$deb"
echo "$deb"
