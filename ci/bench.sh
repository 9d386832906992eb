#!/usr/bin/env bash
# Benchmarks: pgdrill next to the plain shell commands it replaces, in one run, as ratios.
# Not part of the tests (timings never are). Usage: bash ci/bench.sh [runs]
#
#   startup   postgres.ephemeral (step start -> first successful query) vs
#             initdb + pg_ctl start -w + psql (native) and docker run + psql loop (docker)
#   backup    backup.create (zstd, AES-256-GCM, fingerprint counts / full) vs pg_dump -Fc -Z0,
#             pg_dump -Fc and pg_dump -Fp | gzip -6 | openssl enc, on a generated database of
#             at least 500 MB (pgbench scale 30 plus a table of text, jsonb and bytea).
#   verify    the verify runbook end to end (start a throwaway server, restore with jobs=2,
#             compare fingerprint=full / counts) vs pg_restore -j 2 of an unencrypted custom
#             dump into an already running server, once with pgdrill's throwaway settings
#             (the goals' baseline) and once with PostgreSQL's defaults; VRUNS rounds (4).
#             BENCH=startup, BENCH=backup or BENCH=verify runs one of them (verify includes
#             the backups it verifies).
#   drill     (only with BENCH=drill) wall time and measured RTO/RPO of the quickstart drill
#             at its default scale and of the disaster-recovery drill at DRILL_SCALE (default
#             480: about 520 MB of fixtures), both on PROVIDER (default native).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
bash ci/setup.sh >/dev/null
cargo build --release --locked -q
BIN="$PWD/target/release/pgdrill"
IMAGE="${PGDRILL_TEST_IMAGE:-pgdrill/postgres-local:15}"
export PGDRILL_DOCKER_IMAGE="${IMAGE%:*}:{major}"
PGBIN=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
as_user() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; else "$@"; fi; }

pgdrill_startup() {  # provider -> startup_ms of one run
  local dir="$WORK/r$RANDOM"
  "$BIN" run ci/bench/startup.yaml --quiet --var provider="$1" --report "$dir" >/dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["suites"][0]["steps"][0]["outputs"]["startup_ms"])' "$dir/run.json"
}

shell_native() {  # initdb + pg_ctl start -w + first query, as the classic runbooks do it
  local d; d=$(mktemp -d); chmod 755 "$d"; [ "$(id -u)" = 0 ] && chown nobody "$d"
  local port=$((20000 + RANDOM % 20000))
  local t0; t0=$(now_ms)
  as_user "$PGBIN/initdb" -D "$d/data" -U postgres -A trust --no-sync --no-instructions >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$d/data" -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$d" -w -l "$d/log" start >/dev/null
  psql -h 127.0.0.1 -p "$port" -U postgres -Atc 'select 1' >/dev/null
  local t1; t1=$(now_ms)
  as_user "$PGBIN/pg_ctl" -D "$d/data" -m immediate stop >/dev/null
  rm -rf "$d"
  echo $((t1 - t0))
}

shell_docker() {  # docker run + poll until the first query succeeds
  local t0; t0=$(now_ms)
  local id; id=$(docker run -d -p 127.0.0.1::5432 -e POSTGRES_PASSWORD=bench "$IMAGE")
  local port; port=$(docker port "$id" 5432/tcp | head -n 1 | sed 's/.*://')
  until PGPASSWORD=bench psql -h 127.0.0.1 -p "$port" -U postgres -Atc 'select 1' >/dev/null 2>&1; do sleep 0.05; done
  local t1; t1=$(now_ms)
  docker rm -f "$id" >/dev/null
  echo $((t1 - t0))
}

BENCH="${BENCH:-all}"
if [ "$BENCH" = drill ]; then
  PROVIDER="${PROVIDER:-native}"
  field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(next((o['measured_s'] for o in r['objectives'] if o['name']==sys.argv[2]), '-'))" "$@"; }
  size() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(next(s['outputs'].get('size_bytes',0) for s in r['suites'][0]['steps'] if s['uses']=='fixtures.load'))" "$1"; }
  printf '%-20s %8s %10s %8s %8s\n' drill 'size MiB' 'wall s' 'RTO s' 'RPO s'
  for d in quickstart disaster-recovery; do
    scale=10; [ "$d" = disaster-recovery ] && scale="${DRILL_SCALE:-480}"
    t0=$(now_ms)
    "$BIN" run "$d" --quiet --var provider="$PROVIDER" --var scale="$scale" --report "$WORK/$d" >"$WORK/$d.log" 2>&1 || { cat "$WORK/$d.log"; exit 1; }
    t1=$(now_ms)
    printf '%-20s %8s %10s %8s %8s\n' "$d" "$(awk -v b="$(size "$WORK/$d/run.json")" 'BEGIN { printf "%.0f", b / 1048576 }')" \
      "$(awk -v m=$((t1 - t0)) 'BEGIN { printf "%.1f", m / 1000 }')" "$(field "$WORK/$d/report.json" RTO)" "$(field "$WORK/$d/report.json" RPO)"
  done
  exit 0
fi
declare -A results
[ "$BENCH" = backup ] || [ "$BENCH" = verify ] || for kind in pgdrill_native shell_native pgdrill_docker shell_docker; do
  samples=()
  for _ in $(seq 1 "$RUNS"); do
    case $kind in
      pgdrill_native) samples+=("$(pgdrill_startup native)") ;;
      pgdrill_docker) samples+=("$(pgdrill_startup docker)") ;;
      *) samples+=("$($kind)") ;;
    esac
  done
  results[$kind]=$(printf '%s\n' "${samples[@]}" | median)
  echo "[bench] $kind: ${samples[*]} ms (median ${results[$kind]})" >&2
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
if [ "$BENCH" = all ] || [ "$BENCH" = startup ]; then
echo
echo "## Ephemeral server start-up (median of $RUNS, ms, step start -> first successful query)"
echo
echo "| provider | pgdrill | shell equivalent | pgdrill / shell | goal |"
echo "|---|---|---|---|---|"
echo "| native | ${results[pgdrill_native]} | ${results[shell_native]} (initdb + pg_ctl -w + psql) | $(ratio "${results[pgdrill_native]}" "${results[shell_native]}") | <= 2000 |"
echo "| docker | ${results[pgdrill_docker]} | ${results[shell_docker]} (docker run + psql poll) | $(ratio "${results[pgdrill_docker]}" "${results[shell_docker]}") | <= 3000 |"
fi

[ "$BENCH" = startup ] && exit 0

# ---- backup -------------------------------------------------------------------------------
SCALE="${SCALE:-30}"
PGD="$WORK/bench-pg"; mkdir -p "$PGD"; chmod 755 "$WORK" "$PGD"; [ "$(id -u)" = 0 ] && chown nobody "$PGD"
PORT=$((40000 + RANDOM % 10000))
as_user "$PGBIN/initdb" -D "$PGD/data" -U postgres -A trust --no-sync --no-instructions >/dev/null
as_user "$PGBIN/pg_ctl" -D "$PGD/data" -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGD -c shared_buffers=256MB -c max_wal_size=4GB" -w -l "$PGD/log" start >/dev/null
trap 'as_user "$PGBIN/pg_ctl" -D "$PGD/data" -m immediate stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
URL="postgres://postgres@127.0.0.1:$PORT/bench"
psql -h 127.0.0.1 -p "$PORT" -U postgres -qc 'create database bench'
echo "[bench] generating: pgbench scale $SCALE plus a text/jsonb/bytea table" >&2
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -q -s "$SCALE" bench >/dev/null 2>&1
psql -h 127.0.0.1 -p "$PORT" -U postgres -d bench -qc "create table documents as select g as id,
  repeat('lorem ipsum dolor sit amet ' || g, 8) as body,
  jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b', g % 17), 'price', g * 0.01) as meta,
  decode(md5(g::text) || md5((g * 7)::text), 'hex') as blob
  from generate_series(1, 400000) g"
DBSIZE=$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d bench -Atc "select pg_database_size('bench')")
echo "[bench] database size: $((DBSIZE / 1024 / 1024)) MiB" >&2
export PGDRILL_BACKUP_KEY="bench passphrase, not a secret"
export OPENSSL_PASS="$PGDRILL_BACKUP_KEY"

timed() {  # label cmd... -> "ms"
  local t0 t1; t0=$(now_ms); "$@"; t1=$(now_ms); echo $((t1 - t0))
}
size_of() { stat -c %s "$1"; }
psql -h 127.0.0.1 -p "$PORT" -U postgres -d bench -qc 'checkpoint'

ms_z0=$(timed sh -c "pg_dump -h 127.0.0.1 -p $PORT -U postgres -Fc -Z0 bench > $WORK/z0.dump")
ms_fc=$(timed sh -c "pg_dump -h 127.0.0.1 -p $PORT -U postgres -Fc bench > $WORK/fc.dump")
ms_gz=$(timed sh -c "pg_dump -h 127.0.0.1 -p $PORT -U postgres -Fp bench | gzip -6 | openssl enc -aes-256-cbc -pbkdf2 -pass env:OPENSSL_PASS > $WORK/plain.sql.gz.enc")
run_pgdrill() {  # fingerprint -> "ms size rss"
  local dir="$WORK/st-$1" rep="$WORK/rep-$1" t0 t1
  t0=$(now_ms)
  "$BIN" run ci/bench/backup.yaml --quiet --var database_url="$URL" --var storage="$dir" --var fingerprint="$1" --report "$rep" >/dev/null
  t1=$(now_ms)
  python3 - "$rep/run.json" $((t1 - t0)) <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["suites"][0]["steps"][0]["outputs"]
print(sys.argv[2], o["size"], o["peak_rss_kib"])
PY
}
read -r ms_counts size_counts rss_counts < <(run_pgdrill counts)
read -r ms_full size_full rss_full < <(run_pgdrill full)

echo
echo "## Backup of a $((DBSIZE / 1024 / 1024)) MiB database (pgbench scale $SCALE + documents), one run each"
echo
echo "| command | time (s) | output (MiB) | pgdrill counts / this |"
echo "|---|---|---|---|"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
sec() { awk -v m="$1" 'BEGIN { printf "%.1f", m / 1000 }'; }
echo "| pgdrill backup.create, zstd + AES-256-GCM, fingerprint=counts | $(sec "$ms_counts") | $(mib "$size_counts") | 1.00 |"
echo "| pgdrill backup.create, zstd + AES-256-GCM, fingerprint=full | $(sec "$ms_full") | $(mib "$size_full") | $(ratio "$ms_counts" "$ms_full") |"
echo "| pg_dump -Fc -Z0 > file | $(sec "$ms_z0") | $(mib "$(size_of "$WORK/z0.dump")") | $(ratio "$ms_counts" "$ms_z0") (goal <= 1.5) |"
echo "| pg_dump -Fc > file | $(sec "$ms_fc") | $(mib "$(size_of "$WORK/fc.dump")") | $(ratio "$ms_counts" "$ms_fc") |"
echo "| pg_dump -Fp \| gzip -6 \| openssl enc -aes-256-cbc -pbkdf2 | $(sec "$ms_gz") | $(mib "$(size_of "$WORK/plain.sql.gz.enc")") | $(ratio "$ms_counts" "$ms_gz") (goal <= 0.5) |"
echo
echo "pgdrill peak RSS: $((rss_counts / 1024)) MiB (counts), $((rss_full / 1024)) MiB (full); goal < 64 MiB."

[ "$BENCH" = backup ] && exit 0

# ---- verify -------------------------------------------------------------------------------
# Two baselines, each pg_restore -j 2 of the unencrypted custom dump (written by pg_dump to a
# regular file, so with data offsets) into an already running server:
#   - with the throwaway settings pgdrill's own servers use (the list in pg::THROWAWAY_SETTINGS):
#     only the work differs, so this is the baseline the goals are judged against;
#   - with PostgreSQL's defaults, as a shell runbook restoring into an existing server meets it.
# pgdrill also starts its server, decrypts, decompresses, stages and compares.
THROWAWAY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=8GB -c checkpoint_timeout=30min -c maintenance_work_mem=256MB -c autovacuum=off"
start_restore_server() {  # dir port settings...
  local d="$1" p="$2"; shift 2
  mkdir -p "$d"; chmod 755 "$d"; [ "$(id -u)" = 0 ] && chown nobody "$d"
  as_user "$PGBIN/initdb" -D "$d/data" -U postgres -A trust --no-sync --no-instructions >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$d/data" -o "-p $p -c listen_addresses=127.0.0.1 -c unix_socket_directories=$d $*" -w -l "$d/log" start >/dev/null
}
TPD="$WORK/restore-throwaway"; TPORT=$((50000 + RANDOM % 5000))
DPD="$WORK/restore-default"; DPORT=$((55000 + RANDOM % 5000))
trap 'for d in "$PGD" "$TPD" "$DPD"; do as_user "$PGBIN/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1; done; rm -rf "$WORK"' EXIT
start_restore_server "$TPD" "$TPORT" "$THROWAWAY"
start_restore_server "$DPD" "$DPORT"
settle() { sync; sleep 2; }  # the previous run's writes are on disk before the next starts
baseline_restore() {  # port -> ms
  psql -h 127.0.0.1 -p "$1" -U postgres -qc 'drop database if exists restored' -c 'create database restored'
  settle
  timed pg_restore -h 127.0.0.1 -p "$1" -U postgres -j 2 -d restored "$WORK/z0.dump"
}
verify_run() {  # fingerprint -> ms
  local t0 t1 rep="$WORK/vrep-$1"
  rm -rf "$rep"
  settle
  t0=$(now_ms)
  "$BIN" run verify --quiet --var storage="$WORK/st-full" --var database=bench --var provider=native \
    --var jobs=2 --var fingerprint="$1" --var force=true --report "$rep" >/dev/null
  t1=$(now_ms)
  python3 - "$rep/run.json" >>"$WORK/phases-$1" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))["suites"][0]["steps"]
print(" ".join("%s=%.2f" % (s["label"], s["duration"]) for s in steps if s["phase"]["kind"] == "main"))
PY
  echo $((t1 - t0))
}
# Four kinds of run, interleaved, each round starting with the next kind: whatever runs right
# after another's heavy writes is slower here, so each takes each place in turn.
VRUNS="${VRUNS:-4}"
declare -A vsamples
kinds=(pgr_throwaway pgr_default verify_full verify_counts)
for round in $(seq 0 $((VRUNS - 1))); do
  for i in 0 1 2 3; do
    kind=${kinds[$(((round + i) % 4))]}
    case $kind in
      pgr_throwaway) ms=$(baseline_restore "$TPORT") ;;
      pgr_default) ms=$(baseline_restore "$DPORT") ;;
      verify_full) ms=$(verify_run full) ;;
      verify_counts) ms=$(verify_run counts) ;;
    esac
    vsamples[$kind]="${vsamples[$kind]:-} $ms"
  done
done
for kind in "${kinds[@]}"; do echo "[bench] $kind:${vsamples[$kind]} ms" >&2; done
med() { printf '%s\n' ${vsamples[$1]} | median; }
ms_t=$(med pgr_throwaway); ms_d=$(med pgr_default); ms_vfull=$(med verify_full); ms_vcounts=$(med verify_counts)
phases() {  # fingerprint -> median of each phase over the runs
  python3 - "$WORK/phases-$1" <<'PY'
import statistics, sys
runs = [dict(kv.split("=") for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
keys = ["integrity", "scratch", "restore", "schema", "tables", "amcheck"]
print(", ".join("%s %.1f s" % (k, statistics.median(float(r.get(k, 0)) for r in runs)) for k in keys))
PY
}
echo
echo "## Verify by restore of the same database (median of $VRUNS interleaved runs)"
echo
echo "| command | time (s) | / pg_restore, same settings | / pg_restore, default settings | goal (same settings) |"
echo "|---|---|---|---|---|"
echo "| pg_restore -j 2 into a running server with pgdrill's throwaway settings | $(sec "$ms_t") | 1.00 | $(ratio "$ms_t" "$ms_d") | |"
echo "| pg_restore -j 2 into a running server with default settings | $(sec "$ms_d") | $(ratio "$ms_d" "$ms_t") | 1.00 | |"
echo "| pgdrill run verify, jobs=2, fingerprint=full (start server, check, restore, compare, amcheck) | $(sec "$ms_vfull") | $(ratio "$ms_vfull" "$ms_t") | $(ratio "$ms_vfull" "$ms_d") | <= 1.6 |"
echo "| pgdrill run verify, jobs=2, fingerprint=counts | $(sec "$ms_vcounts") | $(ratio "$ms_vcounts" "$ms_t") | $(ratio "$ms_vcounts" "$ms_d") | <= 1.3 |"
echo
echo "verify phases (median; integrity and scratch run side by side, so do tables and amcheck):"
for f in full counts; do
  echo "- $f: $(phases "$f")"
done
