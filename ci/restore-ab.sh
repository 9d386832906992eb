#!/usr/bin/env bash
# Issue 41, outside ci/bench.sh: a 2.5 GB database (the bench's data at SIZES=2.5), backed up
# once by pgdrill; then R interleaved rounds of `pgdrill run verify` (counts: its restore step's
# seconds from run.json) and the same `pg_restore -j 2` into a server started for it (initdb
# and start not timed) with its files in /dev/shm, as pgdrill's throwaway keeps them, and on
# disk. Nothing else runs beside it (no other server, no leftover restored copy).
#   BIN=target/release/pgdrill R=3 bash ci/restore-ab.sh
# With AB=BINARY, the rounds run `pgdrill run verify` of BIN and of BINARY instead (each
# one's check and restore steps): a change measured against the code before it.
# W (default /tmp/pgdrill-restore-ab) keeps the database and backup between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/release/pgdrill}"); R=${R:-3}; PGBIN=/usr/lib/postgresql/15/bin
W=${W:-/tmp/pgdrill-restore-ab}; SHM=/dev/shm/pgdrill-restore-ab
as_user() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
THROWAWAY=$(sed -n '/^pub const THROWAWAY_SETTINGS/,/^];/p' engine/src/pg/mod.rs | sed -n 's/^ *("\([a-z_]*\)", "\([^"]*\)"),.*/-c \1=\2/p' | tr '\n' ' ')
export PGDRILL_BACKUP_KEY="bench passphrase, not a secret"
now() { date +%s%3N; }
if [ ! -f "$W/ready" ]; then
  rm -rf "$W"; mkdir -p "$W"; chmod 755 "$W"; chown nobody "$W"
  as_user $PGBIN/initdb -D "$W/src" -U postgres -A trust --no-sync >/dev/null
  as_user $PGBIN/pg_ctl -D "$W/src" -o "-p 47001 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$W -c shared_buffers=256MB -c max_wal_size=4GB" -w -l "$W/src.log" start >/dev/null
  psql -h 127.0.0.1 -p 47001 -U postgres -qc 'create database bench'
  $PGBIN/pgbench -h 127.0.0.1 -p 47001 -U postgres -i -q -s 125 bench >/dev/null 2>&1
  psql -h 127.0.0.1 -p 47001 -U postgres -d bench -qc "create table documents as select g as id,
    repeat('lorem ipsum dolor sit amet ' || g, 8) as body,
    jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b', g % 17), 'price', g * 0.01) as meta,
    decode(md5(g::text) || md5((g * 7)::text), 'hex') as blob
    from generate_series(1, 1666667) g" -c checkpoint
  psql -h 127.0.0.1 -p 47001 -U postgres -d bench -Atc "select pg_size_pretty(pg_database_size('bench'))"
  pg_dump -h 127.0.0.1 -p 47001 -U postgres -Fc -Z0 bench > "$W/z0.dump"
  "$BIN" run ci/bench/backup.yaml --quiet --var database_url="postgres://postgres@127.0.0.1:47001/bench" --var storage="$W/st" --var fingerprint=counts >/dev/null
  as_user $PGBIN/pg_ctl -D "$W/src" -m fast stop >/dev/null
  touch "$W/ready"
fi
fresh() {  # dir -> prints ms of pg_restore -j 2 (dump copied beside, as staged)
  local d="$1" port=$((46000 + RANDOM % 1000))
  rm -rf "$d"; mkdir -p "$d"; chmod 755 "$d"; chown nobody "$d"
  as_user $PGBIN/initdb -D "$d/data" -U postgres -A trust -E UTF8 --no-locale --no-sync --no-instructions >/dev/null
  as_user $PGBIN/pg_ctl -D "$d/data" -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$d $THROWAWAY" -w -l "$d/log" start >/dev/null
  psql -h 127.0.0.1 -p $port -U postgres -qc "create database restored template template0 lc_collate 'C.UTF-8' lc_ctype 'C.UTF-8'"
  cp "$W/z0.dump" "$SHM-dump"; sync; sleep 2
  local t0 t1; t0=$(now)
  /usr/bin/time -f '%U %S' -o "$W/t" pg_restore -h 127.0.0.1 -p $port -U postgres -j 2 -d restored "$SHM-dump"
  t1=$(now)
  as_user $PGBIN/pg_ctl -D "$d/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$d" "$SHM-dump"
  echo "$((t1 - t0)) cpu_client=$(awk '{print $1+$2}' "$W/t")"
}
pgd() {  # [binary]
  rm -rf "$W/rep"; sync; sleep 2
  local t0 t1; t0=$(now)
  "${1:-$BIN}" run verify --quiet --var storage="$W/st" --var database=bench --var provider=native --var jobs=2 --var fingerprint=counts --var force=true --report "$W/rep" >/dev/null
  t1=$(now)
  python3 - "$W/rep/run.json" "$((t1 - t0))" <<'PY'
import json, sys
suite = json.load(open(sys.argv[1]))["suites"][0]
d = {s["label"]: round(s["duration"], 2) for s in suite["steps"]}
print("wall", sys.argv[2], "integrity", d.get("integrity"), "restore", d.get("restore"), "tables", d.get("tables"), "amcheck", d.get("amcheck"), "scratch", d.get("scratch"))
PY
  grep -rhoE "(data (auto|memory|disk): [^:]*|staging [a-z]*: [^:]*)" "$W/rep" | sort -u | head -3
}
stop_all() {
  for d in "$SHM" "$W/fd"; do [ -f "$d/data/postmaster.pid" ] && as_user $PGBIN/pg_ctl -D "$d/data" -m immediate stop >/dev/null 2>&1; done
  rm -rf "$SHM" "$SHM-dump" "$W/fd"
}
trap stop_all EXIT
for i in $(seq 1 "$R"); do
  if [ -n "${AB:-}" ]; then
    if [ $((i % 2)) = 1 ]; then order="$BIN $AB"; else order="$AB $BIN"; fi
    for b in $order; do echo "[$i] $b: $(pgd "$b" | tr '\n' ' ')"; done
    continue
  fi
  for k in a b c; do
    case $(( (i + ${#k}) % 3 ))$k in *a) echo "[$i] pgdrill: $(pgd | tr '\n' ' ')";; *b) echo "[$i] fresh shm: $(fresh "$SHM")";; *c) echo "[$i] fresh disk: $(fresh "$W/fd")";; esac
  done
done
