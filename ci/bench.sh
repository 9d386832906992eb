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
#   Backup and verify run BRUNS / VRUNS rounds (default 5 each), every kind of run taking
#   each place in the round in turn, and print medians: wall seconds, CPU seconds (user+sys
#   of the command and every process it waited for, plus, for pg_restore into an already
#   running server, what that server's backends spent) and peak RSS of pgdrill itself.
#   The verify rounds also run the peer pipeline teams run by hand (pg_restore -j 2, then
#   amcheck bt_index_check heapallindexed over every B-tree index, then pg_dump -Fc -Z0 of
#   the restored copy > /dev/null, same settings), with each phase's share; the goals are
#   verify full <= 0.8x that pipeline and verify counts <= 1.3x the bare restore. Each
#   verify kind's wall is cut along its critical path from run.json's step times, and its
#   floor printed beside the measured ratio: the archive check beside the server's start +
#   the restore (at best the bare pg_restore's median) + amcheck beside the row hashes + the
#   schema, over the peer pipeline (full) or the bare restore (counts).
#   DBSIZE=2.5 runs one size (GB, as SIZES).
#   VERIFY_AB=1 adds a kind of verify run to the rounds: fingerprint=full with the runbook as
#   it was before its checks ran side by side (fixtures/runbooks/verify-sequential.yaml: one
#   pg_restore, then schema, then tables and amcheck), so what the overlap buys is measured
#   in the same run.
#   VERIFY_STAGING=DIR adds fingerprint=full staging the checked dump in DIR (/dev/shm keeps
#   it in memory), so what writing it to disk costs is measured in the same run.
#   VERIFY_BEFORE=BINARY adds fingerprint=full run by another pgdrill binary (the code before
#   a change), so a change is measured against its base under the same load.
#   SIZES="0.6 2.5 5" runs backup and verify at each size (GB of generated data, scaled
#   from SCALE=30 plus 400k documents = 0.6 GB; the largest is optional, it takes a while) and
#   ends with a table of ratios, peak RSS and staging disk use per size. SCALE=2 is a quick
#   check that the bench itself works.
#   store     (only with BENCH=store) backup to an S3-compatible server on loopback (moto,
#             installed by ci/setup.sh) vs backup to local disk, and verify from it vs verify
#             from local disk, with pgdrill's peak RSS during the upload.
#   drill     (only with BENCH=drill) wall time and measured RTO/RPO of the quickstart drill
#             at its default scale and of the disaster-recovery drill at DRILL_SCALE (default
#             480: about 520 MB of fixtures), both on PROVIDER (default native).
#   pitr      (only with BENCH=pitr) point-in-time recovery of a pg_basebackup folder (tar,
#             manifest) and its cp archive, pgbench scale PITR_SCALE (default 30) plus
#             PITR_LOAD seconds (default 20) of pgbench writes after the base backup, to
#             latest: the pitr runbook's pitr.restore step (pg_verifybackup, extract, replay,
#             proof) and the whole runbook (plus amcheck and counts) vs the same by hand (tar
#             -xf, recovery.signal, restore_command = cp, pg_ctl start until promoted), RUNS
#             rounds, medians. The goal: the recovery <= 1.25x by hand.
#   base      (only with BENCH=base) backup.base (pg_basebackup -Ft streamed through zstd and
#             AES-256-GCM, wal none) vs pg_basebackup -Ft -X none to a local folder without
#             compression, RUNS rounds, medians (goal <= 1.2x); then the WAL archive under a
#             pgbench load with `pgdrill wal push` as archive_command: segments archived per
#             second against segments generated per second (goal: it keeps up).
#   pgbackrest (only with BENCH=pgbackrest) pgdrill's verify of a pgBackRest backup next to
#             the same by hand: a local repository, pgbench scale PGBR_SCALE (default 30) plus
#             PGBR_LOAD seconds (default 20) of writes after a full backup, to latest:
#             `pgdrill run verify-physical` (the physical.verify step, with how much of it was
#             pgbackrest restore and the replay; the rest is pgdrill's checks) vs `pgbackrest
#             restore --type=default --archive-mode=off` + pg_ctl start
#             until promoted, RUNS rounds, medians. The goal: <= 1.15x by hand.
#             PGBR_BEFORE=BINARY adds physical.verify run by another pgdrill binary (the code
#             before a change) to the same rounds: each round by hand, then both binaries in
#             turn (which first alternates), so a change is measured under the same load as
#             its base, with what each binary adds outside the tool's restore and replay.
#   steps     (only with BENCH=steps) the engine alone: a runbook of STEPS (default 10000)
#             trivial steps (`sleep 0s`), wall seconds and peak RSS, without and with
#             --report and --junit. The goal: under 10 s and 100 MB; the cost must grow
#             linearly with the number of steps (it was n²: every step converted every
#             earlier step's outputs for its templates, and JUnit counted shared names per step).
#   list      (only with BENCH=list) listing at scale (issue 41): LIST_OBJECTS (10000) objects
#             of mixed kinds in moto on loopback: `backups list`, `backup.latest`, a prune
#             plan and `fleet plan`, each next to boto3's paginated LIST of the same prefix
#             (goal <= 2x), then the same files locally and a LEDGER_LINES (100000) line
#             ledger (goal < 1 s each); LIST_RUNS (5) rotated rounds, medians, CPU beside wall.
#   evidence  (only with BENCH=evidence) what signing and chaining add to a run: a runbook of
#             one trivial step run EVIDENCE_RUNS times (default 20) without and with
#             --signing-key/--evidence, median wall ms of each; the goal is under 50 ms added.
#   PROFILE=stat|strace|record (any bench) runs every pgdrill under perf stat, strace -c -f
#             or perf record, a file per process in PROFILE_DIR: for counts and proportions
#             (issue 41's profiles), never for the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
bash ci/setup.sh >/dev/null
# PGDRILL_BIN: an already built binary (e.g. to check the bench itself quickly); the
# figures are taken with the release build.
if [ -z "${PGDRILL_BIN:-}" ]; then cargo build --release --locked -q; fi
BIN="${PGDRILL_BIN:-$PWD/target/release/pgdrill}"
IMAGE="${PGDRILL_TEST_IMAGE:-pgdrill/postgres-local:15}"
export PGDRILL_DOCKER_IMAGE="${IMAGE%:*}:{major}"
PGBIN=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# PROFILE=stat|strace|record: every pgdrill the bench runs (archive_command's `wal push`
# included) goes through `perf stat -e task-clock,context-switches,...`, `strace -c -f` or
# `perf record --call-graph dwarf`, one file per process in PROFILE_DIR (default
# ./bench-profile), to read proportions and counts: where the CPU goes, how many reads,
# writes, fsyncs and context switches. A profiled run is slower: its timings are not figures.
if [ -n "${PROFILE:-}" ]; then
  case "$PROFILE" in stat | strace | record) ;; *) echo "bench: PROFILE is stat, strace or record" >&2; exit 2 ;; esac
  PROFILE_DIR="${PROFILE_DIR:-$PWD/bench-profile}"
  mkdir -p "$PROFILE_DIR"
  # The server's user runs archive_command: it writes its own profiles there too.
  chmod 1777 "$PROFILE_DIR"
  chmod 755 "$WORK"
  cat >"$WORK/pgdrill" <<WRAP
#!/bin/sh
out="$PROFILE_DIR/pgdrill-\$(date +%s%N)-\$\$"
case "$PROFILE" in
  stat) exec perf stat -e task-clock,context-switches,cpu-migrations,page-faults -o "\$out.stat" -- "$BIN" "\$@" ;;
  strace) exec strace -c -f -o "\$out.strace" -- "$BIN" "\$@" ;;
  record) exec perf record -F 499 --call-graph dwarf,16384 -o "\$out.perf" -- "$BIN" "\$@" ;;
esac
WRAP
  chmod 755 "$WORK/pgdrill"
  BIN="$WORK/pgdrill"
  echo "[bench] PROFILE=$PROFILE: one file per pgdrill process in $PROFILE_DIR; timings of this run are not figures" >&2
fi

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
if [ "$BENCH" = steps ]; then
  n="${STEPS:-10000}"
  python3 -c 'import sys
n = int(sys.argv[1])
print("name: many-steps\nsteps:")
for i in range(n):
    print("  - id: s%d\n    uses: sleep\n    with: { duration: 0s }" % i)' "$n" >"$WORK/steps.yaml"
  printf '%-16s %8s %10s %10s\n' run steps 'wall s' 'peak MiB'
  for mode in plain reports; do
    extra=(); [ "$mode" = reports ] && extra=(--report "$WORK/steps-report" --junit "$WORK/steps.xml")
    /usr/bin/time -f '%e %M' -o "$WORK/steps.time" "$BIN" run "$WORK/steps.yaml" --quiet "${extra[@]}" >/dev/null
    read -r wall kb <"$WORK/steps.time"
    printf '%-16s %8s %10s %10s\n' "$mode" "$n" "$wall" "$((kb / 1024))"
  done
  exit 0
fi
if [ "$BENCH" = evidence ]; then
  n="${EVIDENCE_RUNS:-20}"
  printf 'name: tiny\nkind: verify\nsteps:\n  - id: s\n    uses: sleep\n    with: { duration: 0s }\n' >"$WORK/tiny.yaml"
  "$BIN" keygen "$WORK/evidence.pem" >/dev/null 2>&1
  for mode in plain signed; do
    extra=(); [ "$mode" = signed ] && extra=(--signing-key "$WORK/evidence.pem" --evidence "$WORK/evidence")
    for _ in $(seq "$n"); do
      t0=$(now_ms)
      "$BIN" run "$WORK/tiny.yaml" --quiet "${extra[@]}" >/dev/null 2>&1
      echo $(($(now_ms) - t0))
    done | median >"$WORK/evidence-$mode.ms"
  done
  plain=$(cat "$WORK/evidence-plain.ms"); signed=$(cat "$WORK/evidence-signed.ms")
  printf '%-10s %10s\n%-10s %10s\n%-10s %10s\n' 'plain ms' "$plain" 'signed ms' "$signed" 'added ms' "$((signed - plain))"
  "$BIN" evidence verify "$WORK/evidence" --public-key "$WORK/evidence.pem.pub" | head -1
  exit 0
fi
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
if [ "$BENCH" = pitr ]; then
  P="$WORK/pitr"; mkdir -p "$P/archive" "$P/base"
  PORT=$((20000 + RANDOM % 20000))
  as_user true 2>/dev/null || true
  [ "$(id -u)" = 0 ] && chown nobody "$P" "$P/archive" && chmod 755 "$WORK"
  as_user "$PGBIN/initdb" -D "$P/src" -U postgres -A trust --no-sync >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$P/src" -l "$P/src.log" -w start -o "-p $PORT -k $P -c listen_addresses=127.0.0.1 \
    -c wal_level=replica -c archive_mode=on -c archive_timeout=5s -c max_wal_senders=4 \
    -c archive_command='test ! -f $P/archive/%f && cp %p $P/archive/%f'" >/dev/null
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -q -s "${PITR_SCALE:-30}" postgres >/dev/null 2>&1
  "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -Ft -X none -c fast -D "$P/base/b1"
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -T "${PITR_LOAD:-20}" -c 2 postgres >/dev/null 2>&1
  seg=$("$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atc "select pg_walfile_name(pg_switch_wal())" postgres)
  for _ in $(seq 1 300); do [ -f "$P/archive/$seg" ] && break; sleep 0.1; done
  as_user "$PGBIN/pg_ctl" -D "$P/src" -m fast -w stop >/dev/null
  [ "$(id -u)" = 0 ] && chmod -R a+rX "$P/archive"
  by_hand() {  # -> ms: extract, recover with cp, until promoted
    local d="$P/hand" t0 t1
    rm -rf "$d"; t0=$(now_ms)
    mkdir -p "$d"; tar -xf "$P/base/b1/base.tar" -C "$d"
    touch "$d/recovery.signal"
    printf "restore_command = 'cp %s/%%f %%p'\narchive_mode = off\nrecovery_target_action = promote\n" "$P/archive" >>"$d/postgresql.auto.conf"
    [ "$(id -u)" = 0 ] && chown -R nobody "$d"; chmod 700 "$d"
    as_user "$PGBIN/pg_ctl" -D "$d" -l "$P/hand.log" -w -t 3600 start -o "-p $PORT -k $P -c listen_addresses=''" >/dev/null || { cat "$P/hand.log" >&2; exit 1; }
    until [ "$("$PGBIN/psql" -h "$P" -p "$PORT" -U postgres -Atc 'select pg_is_in_recovery()' postgres 2>/dev/null)" = f ]; do sleep 0.05; done
    t1=$(now_ms)
    as_user "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null; rm -rf "$d"
    echo $((t1 - t0))
  }
  with_pgdrill() {  # -> "recover_ms runbook_ms"
    local t0 t1 step
    t0=$(now_ms)
    "$BIN" run pitr --quiet --var backups="$P/base" --var wal="$P/archive" --var expect_tables=pgbench_accounts \
      --report "$P/report" >"$P/pgdrill.log" 2>&1 || { cat "$P/pgdrill.log"; exit 1; }
    t1=$(now_ms)
    step=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(int(1000*next(s['duration'] for s in r['suites'][0]['steps'] if s.get('id')=='recover')))" "$P/report/run.json")
    echo "$step $((t1 - t0))"
  }
  hand=(); rec=(); whole=()
  for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then hand+=("$(by_hand)"); read -r a b <<<"$(with_pgdrill)"; else read -r a b <<<"$(with_pgdrill)"; hand+=("$(by_hand)"); fi
    rec+=("$a"); whole+=("$b")
  done
  h=$(printf '%s\n' "${hand[@]}" | median); r=$(printf '%s\n' "${rec[@]}" | median); w=$(printf '%s\n' "${whole[@]}" | median)
  printf '%-34s %10s %8s\n' run 'median ms' ratio
  printf '%-34s %10s %8s\n' "by hand (tar + cp + replay)" "$h" 1.00
  printf '%-34s %10s %8s\n' "pitr.restore (check+restore+proof)" "$r" "$(awk -v a="$r" -v b="$h" 'BEGIN { printf "%.2f", a / b }')"
  printf '%-34s %10s %8s\n' "pitr runbook (+ amcheck, counts)" "$w" "$(awk -v a="$w" -v b="$h" 'BEGIN { printf "%.2f", a / b }')"
  exit 0
fi
if [ "$BENCH" = base ]; then
  B="$WORK/base"; mkdir -p "$B/store"
  PORT=$((20000 + RANDOM % 20000))
  [ "$(id -u)" = 0 ] && chown nobody "$B" "$B/store" && chmod 755 "$WORK"
  openssl rand -hex 32 >"$B/wal.key"
  printf 'storage = %s\nkey_file = %s\n' "$B/store" "$B/wal.key" >"$B/wal.conf"
  [ "$(id -u)" = 0 ] && chown nobody "$B/wal.key" "$B/wal.conf"; chmod 600 "$B/wal.key" "$B/wal.conf"
  as_user "$PGBIN/initdb" -D "$B/src" -U postgres -A trust --no-sync >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$B/src" -l "$B/src.log" -w start -o "-p $PORT -k $B -c listen_addresses=127.0.0.1 \
    -c wal_level=replica -c archive_mode=on -c archive_timeout=5s -c max_wal_senders=4 \
    -c archive_command='$BIN wal push --config $B/wal.conf %p'" >/dev/null
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -q -s "${BASE_SCALE:-30}" postgres >/dev/null 2>&1
  url="postgres://postgres@127.0.0.1:$PORT/postgres"
  by_hand() {  # -> ms of pg_basebackup -Ft -X none into a fresh folder
    local t0 t1; rm -rf "$B/plain"; sync; sleep 2; t0=$(now_ms)
    "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -Ft -X none -c fast -D "$B/plain" >/dev/null
    t1=$(now_ms); echo $((t1 - t0))
  }
  with_pgdrill() {  # -> ms of the base-backup runbook's backup.base (no WAL check)
    local t0 t1; sync; sleep 2; t0=$(now_ms)
    PGDRILL_BACKUP_KEY="$(cat "$B/wal.key")" "$BIN" run base-backup --quiet --var database_url="$url" \
      --var storage="$B/store" --var wal=none --var check_wal=false >"$B/pgdrill.log" 2>&1 || { cat "$B/pgdrill.log"; exit 1; }
    t1=$(now_ms); echo $((t1 - t0))
  }
  hand=(); mine=()
  for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then hand+=("$(by_hand)"); mine+=("$(with_pgdrill)"); else mine+=("$(with_pgdrill)"); hand+=("$(by_hand)"); fi
  done
  h=$(printf '%s\n' "${hand[@]}" | median); m=$(printf '%s\n' "${mine[@]}" | median)
  printf '%-44s %10s %8s\n' run 'median ms' ratio
  printf '%-44s %10s %8s\n' "pg_basebackup -Ft -X none (local, plain)" "$h" 1.00
  printf '%-44s %10s %8s\n' "backup.base (zstd + AES-256-GCM, streamed)" "$m" "$(awk -v a="$m" -v b="$h" 'BEGIN { printf "%.2f", a / b }')"
  # The archive under load: WAL generated vs archived over the same window.
  q() { "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atc "$1" postgres; }
  lsn0=$(q "select pg_current_wal_lsn() - '0/0'"); arch0=$(q "select archived_count from pg_stat_archiver"); t0=$(now_ms)
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -T "${BASE_LOAD:-30}" -c 2 postgres >/dev/null 2>&1
  lsn1=$(q "select pg_current_wal_lsn() - '0/0'"); arch1=$(q "select archived_count from pg_stat_archiver"); t1=$(now_ms)
  awk -v l0="$lsn0" -v l1="$lsn1" -v a0="$arch0" -v a1="$arch1" -v ms=$((t1 - t0)) 'BEGIN {
    s = ms / 1000; printf "WAL generated %.2f segments/s, archived by wal push %.2f segments/s (failed: see pg_stat_archiver)\n", (l1 - l0) / 16777216 / s, (a1 - a0) / s }'
  as_user "$PGBIN/pg_ctl" -D "$B/src" -m fast -w stop >/dev/null
  exit 0
fi
if [ "$BENCH" = pgbackrest ]; then
  P="$WORK/pgbr"; mkdir -p "$P/repo"
  PORT=$((20000 + RANDOM % 20000))
  chmod 755 "$WORK"
  [ "$(id -u)" = 0 ] && chown -R nobody "$P"
  printf '[global]\nrepo1-path=%s/repo\nlog-path=%s\nlock-path=%s/lock\nspool-path=%s/spool\nlog-level-file=off\nstart-fast=y\n\n[bench]\npg1-path=%s/src\npg1-port=%s\npg1-socket-path=%s\npg1-user=postgres\n' \
    "$P" "$P" "$P" "$P" "$P" "$PORT" "$P" >"$P/pgbackrest.conf"
  chmod 644 "$P/pgbackrest.conf"
  as_user "$PGBIN/initdb" -D "$P/src" -U postgres -A trust --no-sync >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$P/src" -l "$P/src.log" -w start -o "-p $PORT -k $P -c listen_addresses='' \
    -c wal_level=replica -c archive_mode=on -c archive_timeout=5s \
    -c archive_command='pgbackrest --config=$P/pgbackrest.conf --stanza=bench archive-push %p'" >/dev/null
  as_user pgbackrest --config="$P/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
  "$PGBIN/pgbench" -h "$P" -p "$PORT" -U postgres -i -q -s "${PGBR_SCALE:-30}" postgres >/dev/null 2>&1
  as_user pgbackrest --config="$P/pgbackrest.conf" --stanza=bench --type=full backup >/dev/null
  "$PGBIN/pgbench" -h "$P" -p "$PORT" -U postgres -T "${PGBR_LOAD:-20}" -c 2 postgres >/dev/null 2>&1
  "$PGBIN/psql" -h "$P" -p "$PORT" -U postgres -Atc "select pg_switch_wal()" postgres >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$P/src" -m fast -w stop >/dev/null
  by_hand() {  # -> ms: pgbackrest restore to latest, start, until promoted
    local d="$P/hand" t0 t1
    rm -rf "$d"; mkdir -p "$d"; chmod 700 "$d"; [ "$(id -u)" = 0 ] && chown nobody "$d"
    t0=$(now_ms)
    # A lock directory of its own: by hand and pgdrill (root) never share lock files.
    # --type=default replays to the archive's end and promotes (pgBackRest refuses
    # --target-action without a target).
    as_user pgbackrest --config="$P/pgbackrest.conf" --stanza=bench --pg1-path="$d" --lock-path="$P/lock-hand" --type=default \
      --archive-mode=off restore >/dev/null
    as_user "$PGBIN/pg_ctl" -D "$d" -l "$P/hand.log" -w -t 3600 start -o "-p $PORT -k $P -c listen_addresses=''" >/dev/null || { cat "$P/hand.log" >&2; exit 1; }
    until [ "$("$PGBIN/psql" -h "$P" -p "$PORT" -U postgres -Atc 'select pg_is_in_recovery()' postgres 2>/dev/null)" = f ]; do sleep 0.05; done
    t1=$(now_ms)
    as_user "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null; rm -rf "$d"
    echo $((t1 - t0))
  }
  with_pgdrill() {  # [binary] -> "step_ms restore_ms replay_ms runbook_ms"
    local t0 t1
    t0=$(now_ms)
    "${1:-$BIN}" run verify-physical --quiet --var "source=pgbackrest://bench?config=$P/pgbackrest.conf" \
      --var 'marker=select count(*) > 0 from pgbench_accounts' --var accept_unproven=true --report "$P/report" >"$P/pgdrill.log" 2>&1 || { cat "$P/pgdrill.log"; exit 1; }
    t1=$(now_ms)
    python3 -c "import json,sys
r = json.load(open(sys.argv[1]))
s = next(s for s in r['suites'][0]['steps'] if s.get('id') == 'recover')
print(int(1000 * s['duration']), int(1000 * s['outputs']['restore_s']), int(1000 * s['outputs']['replay_s']), sys.argv[2])" "$P/report/run.json" $((t1 - t0))
  }
  hand=(); step=(); rest=(); repl=(); whole=(); bstep=(); bextra=(); extra=()
  before() {  # PGBR_BEFORE's physical.verify, kept apart
    local a b c d
    read -r a b c d <<<"$(with_pgdrill "$PGBR_BEFORE")"
    bstep+=("$a"); bextra+=("$((a - b - c))")
  }
  for i in $(seq 1 "$RUNS"); do
    if [ -n "${PGBR_BEFORE:-}" ] && [ $((i % 2)) = 0 ]; then before; fi
    if [ $((i % 2)) = 1 ]; then hand+=("$(by_hand)"); read -r a b c d <<<"$(with_pgdrill)"; else read -r a b c d <<<"$(with_pgdrill)"; hand+=("$(by_hand)"); fi
    if [ -n "${PGBR_BEFORE:-}" ] && [ $((i % 2)) = 1 ]; then before; fi
    step+=("$a"); rest+=("$b"); repl+=("$c"); whole+=("$d"); extra+=("$((a - b - c))")
  done
  h=$(printf '%s\n' "${hand[@]}" | median); r=$(printf '%s\n' "${step[@]}" | median); w=$(printf '%s\n' "${whole[@]}" | median)
  printf '%-40s %10s %8s\n' run 'median ms' ratio
  printf '%-40s %10s %8s\n' "by hand (pgbackrest restore + replay)" "$h" 1.00
  printf '%-40s %10s %8s\n' "physical.verify (restore+replay+proof)" "$r" "$(awk -v a="$r" -v b="$h" 'BEGIN { printf "%.2f", a / b }')"
  printf '%-40s %10s %8s\n' "verify-physical runbook" "$w" "$(awk -v a="$w" -v b="$h" 'BEGIN { printf "%.2f", a / b }')"
  printf '%-40s %10s\n' "  of which pgbackrest restore" "$(printf '%s\n' "${rest[@]}" | median)"
  printf '%-40s %10s\n' "  of which replay (start to promotion)" "$(printf '%s\n' "${repl[@]}" | median)"
  printf '%-40s %10s\n' "  the rest (pgdrill's own and the proof)" "$(printf '%s\n' "${extra[@]}" | median)"
  if [ -n "${PGBR_BEFORE:-}" ]; then
    b=$(printf '%s\n' "${bstep[@]}" | median)
    printf '%-40s %10s %8s\n' "physical.verify of PGBR_BEFORE" "$b" "$(awk -v a="$b" -v b="$h" 'BEGIN { printf "%.2f", a / b }')"
    printf '%-40s %10s\n' "  the rest (pgdrill's own and the proof)" "$(printf '%s\n' "${bextra[@]}" | median)"
  fi
  exit 0
fi
declare -A results
[ "$BENCH" = backup ] || [ "$BENCH" = verify ] || [ "$BENCH" = store ] || [ "$BENCH" = list ] || for kind in pgdrill_native shell_native pgdrill_docker shell_docker; do
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

# ---- backup and verify, at one or several sizes ----------------------------------------------
export PGDRILL_BACKUP_KEY="bench passphrase, not a secret"
export OPENSSL_PASS="$PGDRILL_BACKUP_KEY"
BRUNS="${BRUNS:-5}"
VRUNS="${VRUNS:-5}"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
sec() { awk -v m="$1" 'BEGIN { printf "%.1f", m / 1000 }'; }
size_of() { stat -c %s "$1"; }
settle() { sync; sleep 2; }  # the previous run's writes are on disk before the next starts
SERVERS=()
stop_servers() { for d in "${SERVERS[@]}"; do as_user "$PGBIN/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true; done; SERVERS=(); }
trap 'stop_servers; rm -rf "$WORK" "/dev/shm/pgdrill-bench-$$"' EXIT
start_server() {  # dir port settings...
  local d="$1" p="$2"; shift 2
  rm -rf "$d"; mkdir -p "$d"; chmod 755 "$WORK" "$d"; [ "$(id -u)" = 0 ] && chown nobody "$d"
  as_user "$PGBIN/initdb" -D "$d/data" -U postgres -A trust --no-sync --no-instructions >/dev/null
  as_user "$PGBIN/pg_ctl" -D "$d/data" -o "-p $p -c listen_addresses=127.0.0.1 -c unix_socket_directories=$d $*" -w -l "$d/log" start >/dev/null
  SERVERS+=("$d")
}
# The throwaway settings, read from the one list pgdrill's own servers use
# (pg::THROWAWAY_SETTINGS), so the baseline always runs with exactly the same ones.
THROWAWAY=$(sed -n '/^pub const THROWAWAY_SETTINGS/,/^];/p' engine/src/pg/mod.rs \
  | sed -n 's/^ *("\([a-z_]*\)", "\([^"]*\)"),.*/-c \1=\2/p' | tr '\n' ' ')
[ -n "$THROWAWAY" ] || { echo "bench: could not read THROWAWAY_SETTINGS from engine/src/pg/mod.rs" >&2; exit 1; }
echo "[bench] throwaway settings (pgdrill's servers and the same-settings baseline): $THROWAWAY" >&2

# CPU seconds a running server's backends spent: the postmaster's own and its reaped
# children's user+sys ticks (/proc/PID/stat fields 14-17).
server_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$(head -n 1 "$1/data/postmaster.pid")/stat"; }
TCK=$(getconf CLK_TCK)
# measure OUT cmd...: runs cmd; writes "wall_ms cpu_ms peak_rss_kib" to OUT. CPU is user+sys
# of cmd and every process it waited for (GNU time); peak RSS is the command's own VmHWM
# (sampled; a throwaway server pgdrill starts is not counted in it).
# What else the machine did during a round, printed beside it: CPU time the hypervisor took
# (steal), major page faults and pages the kernel reclaimed by direct scans. A round whose
# wall and CPU both grow with these is the machine's noise, not the command's.
noise_now() {
  awk '/^cpu / { print $9 }' /proc/stat
  awk '$1 == "pgmajfault" || $1 == "pgscan_direct" { print $2 }' /proc/vmstat
}
measure() {
  local out="$1"; shift
  local tf="$WORK/time.$RANDOM" t0 t1 hwm=0 pid h n0
  n0=$(noise_now | tr '\n' ' ')
  t0=$(now_ms)
  /usr/bin/time -f '%U %S' -o "$tf" "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    # time's own child is the command.
    local c; c=$(pgrep -P "$pid" | head -n 1 || true)
    if [ -n "$c" ]; then
      h=$(awk '/^VmHWM/ { print $2 }' "/proc/$c/status" 2>/dev/null || true)
      [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
    fi
    sleep 0.1
  done
  wait "$pid"
  t1=$(now_ms)
  awk -v w=$((t1 - t0)) -v h="$hwm" '{ printf "%d %d %d\n", w, ($1 + $2) * 1000, h }' "$tf" >"$out"
  rm -f "$tf"
  # shellcheck disable=SC2086
  set -- $n0 $(noise_now | tr '\n' ' ')
  echo "[bench]   round: wall $((t1 - t0)) ms; steal $((($4 - $1) * 1000 / TCK)) ms, major faults $(($5 - $2)), pages scanned directly $(($6 - $3))" >&2
}
median_of() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
# col FILE N: the median of column N of FILE's lines
col() { awk -v n="$2" '{ print $n }' "$1" | median_of; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }

GROWTH="$WORK/growth"
: >"$GROWTH"

# BENCH=store: backup into an S3-compatible server on loopback (moto, in memory) next to a
# backup to local disk, and verify from it next to verify from local disk, rotated rounds.
bench_store() {  # dir url dbsize scale docs
  local S="$1" URL="$2" DBSIZE="$3" MPORT=$((45000 + RANDOM % 5000))
  moto_server -H 127.0.0.1 -p "$MPORT" >/dev/null 2>&1 &
  local MOTO=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$MPORT/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs -X PUT "http://127.0.0.1:$MPORT/bench" >/dev/null
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL="http://127.0.0.1:$MPORT" AWS_ALLOW_HTTP=true
  local kinds=(b_local b_s3) round i kind
  for round in $(seq 0 $((BRUNS - 1))); do
    for i in 0 1; do
      kind=${kinds[$(((round + i) % 2))]}
      settle
      case $kind in
        b_local) rm -rf "$S/st-local"; measure "$S/m" "$BIN" run ci/bench/backup.yaml --quiet --var database_url="$URL" --var storage="$S/st-local" --var fingerprint=counts >/dev/null ;;
        b_s3) measure "$S/m" "$BIN" run ci/bench/backup.yaml --quiet --var database_url="$URL" --var storage="s3://bench/r$round" --var fingerprint=counts >/dev/null ;;
      esac
      cat "$S/m" >>"$S/s-$kind"
    done
  done
  stop_servers
  kinds=(v_local v_s3)
  for round in $(seq 0 $((VRUNS - 1))); do
    for i in 0 1; do
      kind=${kinds[$(((round + i) % 2))]}
      settle
      case $kind in
        v_local) measure "$S/m" "$BIN" run verify --quiet --var storage="$S/st-local" --var database=bench --var provider=native --var jobs=2 --var fingerprint=counts --var force=true >/dev/null ;;
        v_s3) measure "$S/m" "$BIN" run verify --quiet --var storage="s3://bench/r0" --var database=bench --var provider=native --var jobs=2 --var fingerprint=counts --var force=true >/dev/null ;;
      esac
      cat "$S/m" >>"$S/s-$kind"
    done
  done
  kill "$MOTO" 2>/dev/null || true
  for kind in b_local b_s3 v_local v_s3; do echo "[bench] $kind (wall_ms cpu_ms rss_kib per round): $(tr '\n' ';' <"$S/s-$kind")" >&2; done
  local bl bs vl vs
  bl=$(col "$S/s-b_local" 1); bs=$(col "$S/s-b_s3" 1); vl=$(col "$S/s-v_local" 1); vs=$(col "$S/s-v_s3" 1)
  echo
  echo "## Object storage: a $((DBSIZE / 1024 / 1024)) MiB database, S3-compatible server (moto) on loopback, median of $BRUNS / $VRUNS rotated rounds"
  echo
  echo "| command | wall (s) | CPU (s) | peak RSS (MiB) | S3 / local | goal |"
  echo "|---|---|---|---|---|---|"
  echo "| pgdrill backup to local disk (fingerprint counts) | $(sec "$bl") | $(sec "$(col "$S/s-b_local" 2)") | $(($(col "$S/s-b_local" 3) / 1024)) | 1.00 | |"
  echo "| pgdrill backup to s3:// (streamed multipart upload, size and sha256 read back) | $(sec "$bs") | $(sec "$(col "$S/s-b_s3" 2)") | $(($(col "$S/s-b_s3" 3) / 1024)) | $(ratio "$bs" "$bl") | <= 1.25, RSS <= 96 MiB |"
  echo "| pgdrill verify from local disk (jobs=2, counts) | $(sec "$vl") | $(sec "$(col "$S/s-v_local" 2)") | $(($(col "$S/s-v_local" 3) / 1024)) | 1.00 | |"
  echo "| pgdrill verify from s3:// (streamed: checked and staged in one pass) | $(sec "$vs") | $(sec "$(col "$S/s-v_s3" 2)") | $(($(col "$S/s-v_s3" 3) / 1024)) | $(ratio "$vs" "$vl") | <= 1.15 |"
}

bench_size() {  # scale documents
  local scale="$1" docs="$2" S="$WORK/size-$1"
  rm -rf "$S"; mkdir -p "$S"; chmod 755 "$S"
  local PGD="$S/source" PORT=$((40000 + RANDOM % 10000))
  start_server "$PGD" "$PORT" -c shared_buffers=256MB -c max_wal_size=4GB
  local URL="postgres://postgres@127.0.0.1:$PORT/bench"
  psql -h 127.0.0.1 -p "$PORT" -U postgres -qc 'create database bench'
  echo "[bench] generating: pgbench scale $scale plus $docs rows of text/jsonb/bytea" >&2
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -q -s "$scale" bench >/dev/null 2>&1
  psql -h 127.0.0.1 -p "$PORT" -U postgres -d bench -qc "create table documents as select g as id,
    repeat('lorem ipsum dolor sit amet ' || g, 8) as body,
    jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b', g % 17), 'price', g * 0.01) as meta,
    decode(md5(g::text) || md5((g * 7)::text), 'hex') as blob
    from generate_series(1, $docs) g" -c 'checkpoint'
  local DBSIZE; DBSIZE=$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d bench -Atc "select pg_database_size('bench')")
  echo "[bench] database size: $((DBSIZE / 1024 / 1024)) MiB" >&2

  if [ "$BENCH" = store ]; then bench_store "$S" "$URL" "$DBSIZE" "$scale" "$docs"; stop_servers; rm -rf "$S"; return; fi

  # ---- backup: five kinds, BRUNS rounds, each kind taking each place in turn -------------
  local pgd="pg_dump -h 127.0.0.1 -p $PORT -U postgres"
  local bkinds=(counts full z0 fc gz) round i kind
  for round in $(seq 0 $((BRUNS - 1))); do
    for i in 0 1 2 3 4; do
      kind=${bkinds[$(((round + i) % 5))]}
      settle
      case $kind in
        z0) measure "$S/m" sh -c "$pgd -Fc -Z0 bench > $S/z0.dump" ;;
        fc) measure "$S/m" sh -c "$pgd -Fc bench > $S/fc.dump" ;;
        gz) measure "$S/m" sh -c "$pgd -Fp bench | gzip -6 | openssl enc -aes-256-cbc -pbkdf2 -pass env:OPENSSL_PASS > $S/plain.sql.gz.enc" ;;
        counts | full)
          rm -rf "$S/st-$kind" "$S/rep-$kind"
          measure "$S/m" "$BIN" run ci/bench/backup.yaml --quiet --var database_url="$URL" --var storage="$S/st-$kind" \
            --var fingerprint="$kind" --report "$S/rep-$kind" >/dev/null
          python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["suites"][0]["steps"][0]["outputs"]; print(o["size"], o["peak_rss_kib"])' \
            "$S/rep-$kind/run.json" >>"$S/bout-$kind" ;;
      esac
      cat "$S/m" >>"$S/b-$kind"
    done
  done
  for kind in "${bkinds[@]}"; do echo "[bench] backup $kind (wall_ms cpu_ms rss_kib per round): $(tr '\n' ';' <"$S/b-$kind")" >&2; done
  local bc bf bz bfc bgz
  bc=$(col "$S/b-counts" 1); bf=$(col "$S/b-full" 1); bz=$(col "$S/b-z0" 1); bfc=$(col "$S/b-fc" 1); bgz=$(col "$S/b-gz" 1)
  local rss_c rss_f; rss_c=$(col "$S/bout-counts" 2); rss_f=$(col "$S/bout-full" 2)
  echo
  echo "## Backup of a $((DBSIZE / 1024 / 1024)) MiB database (pgbench scale $scale + $docs documents), median of $BRUNS rotated rounds"
  echo
  echo "| command | wall (s) | CPU (s) | output (MiB) | pgdrill counts / this (wall) |"
  echo "|---|---|---|---|---|"
  echo "| pgdrill backup.create, zstd + AES-256-GCM, fingerprint=counts | $(sec "$bc") | $(sec "$(col "$S/b-counts" 2)") | $(mib "$(col "$S/bout-counts" 1)") | 1.00 |"
  echo "| pgdrill backup.create, zstd + AES-256-GCM, fingerprint=full | $(sec "$bf") | $(sec "$(col "$S/b-full" 2)") | $(mib "$(col "$S/bout-full" 1)") | $(ratio "$bc" "$bf") |"
  echo "| pg_dump -Fc -Z0 > file | $(sec "$bz") | $(sec "$(col "$S/b-z0" 2)") | $(mib "$(size_of "$S/z0.dump")") | $(ratio "$bc" "$bz") (goal <= 1.5) |"
  echo "| pg_dump -Fc > file | $(sec "$bfc") | $(sec "$(col "$S/b-fc" 2)") | $(mib "$(size_of "$S/fc.dump")") | $(ratio "$bc" "$bfc") |"
  echo "| pg_dump -Fp \| gzip -6 \| openssl enc -aes-256-cbc -pbkdf2 | $(sec "$bgz") | $(sec "$(col "$S/b-gz" 2)") | $(mib "$(size_of "$S/plain.sql.gz.enc")") | $(ratio "$bc" "$bgz") (goal <= 0.5) |"
  echo
  echo "CPU: user+sys of the command and its children (pg_dump's server backend is not included for any row)."
  echo "pgdrill peak RSS (median): $((rss_c / 1024)) MiB (counts), $((rss_f / 1024)) MiB (full); goal <= 64 MiB."
  if [ "$BENCH" = backup ]; then
    echo "$DBSIZE $(ratio "$bc" "$bz") $(ratio "$bc" "$bgz") - - $rss_c - - $(size_of "$S/z0.dump")" >>"$GROWTH"
    stop_servers; rm -rf "$S"; return
  fi

  # ---- verify ---------------------------------------------------------------------------
  # Two baselines, each pg_restore -j 2 of the unencrypted custom dump (written by pg_dump to a
  # regular file, so with data offsets) into an already running server: with pgdrill's
  # throwaway settings (only the work differs: the goals' baseline), and with PostgreSQL's
  # defaults, as a shell runbook restoring into an existing server meets it. pgdrill also
  # starts its server, decrypts, decompresses, stages and compares.
  local TPD="$S/restore-throwaway" TPORT=$((50000 + RANDOM % 5000))
  # The same server with its files in memory (/dev/shm), as pgdrill's own throwaway keeps
  # them when they fit (`data: auto`): what the restore costs without a disk under it.
  local MPD="/dev/shm/pgdrill-bench-$$/restore-memory" MPORT_=$((45000 + RANDOM % 5000))
  local DPD="$S/restore-default" DPORT=$((55000 + RANDOM % 5000))
  stop_servers  # the source is not needed any more: its memory and CPU stay out of the way
  start_server "$TPD" "$TPORT" $THROWAWAY
  mkdir -p "$(dirname "$MPD")"; chmod 755 "$(dirname "$MPD")"
  start_server "$MPD" "$MPORT_" $THROWAWAY
  start_server "$DPD" "$DPORT"
  baseline_restore() {  # dir port
    psql -h 127.0.0.1 -p "$2" -U postgres -qc 'drop database if exists restored' -c 'create database restored'
    settle
    local before after
    before=$(server_ticks "$1")
    measure "$S/m" pg_restore -h 127.0.0.1 -p "$2" -U postgres -j 2 -d restored "$S/z0.dump"
    sleep 0.5  # the backends have exited and been reaped
    after=$(server_ticks "$1")
    awk -v t="$(((after - before) * 1000 / TCK))" '{ print $1, $2 + t, $3 }' "$S/m" >"$S/m2" && mv "$S/m2" "$S/m"
    # Dropped once measured: a restored copy left until the next round held its memory
    # (the /dev/shm server's 3.5 GB at 2.5 GB) through every other kind's round, pgdrill's
    # throwaway among them, whose files and staged dump go to /dev/shm too.
    psql -h 127.0.0.1 -p "$2" -U postgres -qc 'drop database restored'
  }
  # The same pg_restore into a server started for it (initdb and start not timed): what
  # verify's throwaway is, where the baselines above restore into a server that has
  # restored this dump before. The gap between the two is what a new server costs the restore.
  fresh_restore() {  # port
    local FPD="$S/restore-fresh"
    start_server "$FPD" "$1" $THROWAWAY
    psql -h 127.0.0.1 -p "$1" -U postgres -qc 'create database restored'
    settle
    local before after
    before=$(server_ticks "$FPD")
    measure "$S/m" pg_restore -h 127.0.0.1 -p "$1" -U postgres -j 2 -d restored "$S/z0.dump"
    sleep 0.5
    after=$(server_ticks "$FPD")
    awk -v t="$(((after - before) * 1000 / TCK))" '{ print $1, $2 + t, $3 }' "$S/m" >"$S/m2" && mv "$S/m2" "$S/m"
    as_user "$PGBIN/pg_ctl" -D "$FPD/data" -m immediate stop >/dev/null 2>&1 || true
    unset 'SERVERS[${#SERVERS[@]}-1]'
    rm -rf "$FPD"
  }
  verify_run() {  # fingerprint [runbook] [tag] [staging directory] [binary]
    local rep="$S/vrep-$1${3:-}"
    rm -rf "$rep"
    settle
    measure "$S/m" "${5:-$BIN}" run "${2:-verify}" --quiet --var storage="$S/st-full" --var database=bench --var provider=native \
      --var jobs=2 --var fingerprint="$1" --var force=true ${4:+--var staging="$4"} --report "$rep" --junit "$rep.xml" >/dev/null
    # Where the run put its staged dump and its server's files, and whether the data offsets
    # were recorded (without them pg_restore -j scans the dump for every table).
    grep -rhoE "(data (auto|memory|disk): [^:]*|staging [a-z]*: [^:]*|recorded where the data of [0-9]+ entries starts|data offsets not recorded[^:]*)" "$rep" 2>/dev/null \
      | sort -u | sed 's/^/[bench]   verify: /' >&2 || true
    # Each main step's seconds, and the run cut into the segments of its critical path
    # (seg_*), from each step's start and duration in run.json: what the floor below is
    # computed from, and where the rest of the wall goes.
    python3 - "$rep/run.json" "$(cut -d' ' -f1 "$S/m")" >>"$S/phases-$1${3:-}" <<'PY'
import datetime, json, sys
def at(t):  # RFC 3339 with nanoseconds -> seconds
    day, frac = (t.rstrip("Z").split(".") + ["0"])[:2]
    return datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc).timestamp() + float("0." + frac)
suite = json.load(open(sys.argv[1]))["suites"][0]
t0 = at(suite["started_at"])
steps = suite["steps"]
span = {s["label"]: (at(s["started_at"]) - t0, at(s["started_at"]) - t0 + s["duration"]) for s in steps if s["phase"]["kind"] in ("main", "finally")}
out = ["%s=%.2f" % (s["label"], s["duration"]) for s in steps if s["phase"]["kind"] in ("main", "finally")]
g = lambda k, i: span.get(k, (0, 0))[i]
first = min(g("integrity", 0), g("scratch", 0))
ready = max(g("integrity", 1), g("scratch", 1))
checked = max(g("amcheck", 1), g("tables", 1))
seg = {
    "seg_before": first,  # process start to the archive check: loading, pick
    "seg_check": ready - first,  # the archive check beside the server's start
    "seg_prepare": g("restore", 0) - ready,  # database create, roles
    "seg_restore": g("restore", 1) - g("restore", 0),
    "seg_checks": checked - g("restore", 1),  # amcheck beside the row hashes
    "seg_schema": g("schema", 1) - checked,  # database settings, schema
    "seg_after": suite["duration"] - g("schema", 1),  # freshness, record, teardown
    "seg_outside": int(sys.argv[2]) / 1000 - suite["duration"],  # process start and exit
}
print(" ".join(out + ["%s=%.2f" % kv for kv in seg.items()]))
PY
    # What was staged for the restore: backup.check logs it (in the JUnit).
    echo "staged_bytes=$(cat "$rep.xml" | sed -n 's/.*staged the checked dump (\([0-9]*\) bytes).*/\1/p' | head -n 1)" >>"$S/phases-$1${3:-}"
  }
  # The peer pipeline teams run by hand to prove a logical backup (issue 41; the approach
  # of the public pgBackRest restore-check scripts): pg_restore -j 2, then amcheck's
  # bt_index_check with heapallindexed over every B-tree index, then pg_dump -Fc -Z0 of the
  # restored copy to /dev/null (reads every row), into the server with pgdrill's throwaway
  # settings; each phase's seconds kept for its share.
  peer_run() {  # dir port
    psql -h 127.0.0.1 -p "$2" -U postgres -qc 'drop database if exists restored' -c 'create database restored'
    settle
    local before after
    before=$(server_ticks "$1")
    measure "$S/m" bash -c '
      set -e
      t0=$(date +%s%3N)
      pg_restore -h 127.0.0.1 -p "$1" -U postgres -j 2 -d restored "$2"
      t1=$(date +%s%3N)
      psql -h 127.0.0.1 -p "$1" -U postgres -d restored -qAt -v ON_ERROR_STOP=1 -c "create extension if not exists amcheck" \
        -c "select count(bt_index_check(c.oid, true)) from pg_index i join pg_class c on c.oid = i.indexrelid join pg_am a on a.oid = c.relam where a.amname = '"'"'btree'"'"' and c.relpersistence <> '"'"'t'"'"' and i.indisvalid" >/dev/null
      t2=$(date +%s%3N)
      pg_dump -h 127.0.0.1 -p "$1" -U postgres -Fc -Z0 restored >/dev/null
      t3=$(date +%s%3N)
      echo "restore=$(((t1 - t0))) amcheck=$(((t2 - t1))) dump=$(((t3 - t2)))" >>"$3"' _ "$2" "$S/z0.dump" "$S/phases-peer"
    sleep 0.5
    after=$(server_ticks "$1")
    awk -v t="$(((after - before) * 1000 / TCK))" '{ print $1, $2 + t, $3 }' "$S/m" >"$S/m2" && mv "$S/m2" "$S/m"
    psql -h 127.0.0.1 -p "$2" -U postgres -qc 'drop database restored'
  }
  local vkinds=(pgr_throwaway pgr_default pgr_memory pgr_fresh peer verify_full verify_counts)
  local FPORT=$((40000 + RANDOM % 5000))
  # VERIFY_AB=1: also the runbook as it was before its checks ran side by side
  # (fixtures/runbooks/verify-sequential.yaml), to measure what the overlap buys.
  if [ -n "${VERIFY_AB:-}" ]; then vkinds+=(verify_full_seq); fi
  # VERIFY_STAGING=DIR: also fingerprint=full staging the checked dump in DIR (/dev/shm: in
  # memory), to measure what writing the staged dump to disk costs.
  if [ -n "${VERIFY_STAGING:-}" ]; then vkinds+=(verify_full_staging); fi
  # VERIFY_BEFORE=BINARY: also fingerprint=full run by another pgdrill (the code before a
  # change), in the same rotated rounds: a change measured under the same load as its base.
  if [ -n "${VERIFY_BEFORE:-}" ]; then vkinds+=(verify_full_before); fi
  local nk=${#vkinds[@]}
  for round in $(seq 0 $((VRUNS - 1))); do
    for i in $(seq 0 $((nk - 1))); do
      kind=${vkinds[$(((round + i) % nk))]}
      case $kind in
        pgr_throwaway) baseline_restore "$TPD" "$TPORT" ;;
        pgr_default) baseline_restore "$DPD" "$DPORT" ;;
        pgr_memory) baseline_restore "$MPD" "$MPORT_" ;;
        pgr_fresh) fresh_restore "$FPORT" ;;
        peer) peer_run "$TPD" "$TPORT" ;;
        verify_full) verify_run full ;;
        verify_counts) verify_run counts ;;
        verify_full_seq) verify_run full fixtures/runbooks/verify-sequential.yaml seq ;;
        verify_full_staging) verify_run full verify staging "$VERIFY_STAGING" ;;
        verify_full_before) verify_run full verify before "" "$VERIFY_BEFORE" ;;
      esac
      cat "$S/m" >>"$S/v-$kind"
    done
  done
  for kind in "${vkinds[@]}"; do echo "[bench] $kind (wall_ms cpu_ms rss_kib per round): $(tr '\n' ';' <"$S/v-$kind")" >&2; done
  local vt vd vf vc
  vt=$(col "$S/v-pgr_throwaway" 1); vd=$(col "$S/v-pgr_default" 1); vf=$(col "$S/v-verify_full" 1); vc=$(col "$S/v-verify_counts" 1)
  phases() {  # fingerprint -> median of each phase over the runs
    python3 - "$S/phases-$1" <<'PY'
import statistics, sys
runs = [dict(kv.split("=") for kv in line.split()) for line in open(sys.argv[1]) if line.strip() and not line.startswith("staged_bytes")]
keys = ["integrity", "scratch", "restore", "tables", "amcheck", "schema"]
print(", ".join("%s %.1f s" % (k, statistics.median(float(r.get(k, 0)) for r in runs)) for k in keys))
PY
  }
  local staged; staged=$(sed -n 's/^staged_bytes=//p' "$S/phases-full" | median_of)
  local vrss; vrss=$(cat "$S/v-verify_full" "$S/v-verify_counts" | awk '{ print $3 }' | sort -n | tail -n 1)
  echo
  echo "## Verify by restore of the same database (median of $VRUNS rotated rounds)"
  echo
  echo "| command | wall (s) | CPU (s) | / pg_restore, same settings | / pg_restore, default settings | goal (same settings) |"
  echo "|---|---|---|---|---|---|"
  echo "| pg_restore -j 2 into a running server with pgdrill's throwaway settings | $(sec "$vt") | $(sec "$(col "$S/v-pgr_throwaway" 2)") | 1.00 | $(ratio "$vt" "$vd") | |"
  echo "| pg_restore -j 2 into a running server with default settings | $(sec "$vd") | $(sec "$(col "$S/v-pgr_default" 2)") | $(ratio "$vd" "$vt") | 1.00 | |"
  local vm vn; vm=$(col "$S/v-pgr_memory" 1); vn=$(col "$S/v-pgr_fresh" 1)
  echo "| pg_restore -j 2 into a running server with pgdrill's throwaway settings, its files in /dev/shm | $(sec "$vm") | $(sec "$(col "$S/v-pgr_memory" 2)") | $(ratio "$vm" "$vt") | $(ratio "$vm" "$vd") | |"
  echo "| pg_restore -j 2 into a server started for it (initdb and start not timed), pgdrill's throwaway settings | $(sec "$vn") | $(sec "$(col "$S/v-pgr_fresh" 2)") | $(ratio "$vn" "$vt") | $(ratio "$vn" "$vd") | |"
  echo "| pgdrill run verify, jobs=2, fingerprint=full (start server, check, restore, compare, amcheck heapallindexed) | $(sec "$vf") | $(sec "$(col "$S/v-verify_full" 2)") | $(ratio "$vf" "$vt") | $(ratio "$vf" "$vd") | <= 1.6 |"
  echo "| pgdrill run verify, jobs=2, fingerprint=counts (amcheck structure only) | $(sec "$vc") | $(sec "$(col "$S/v-verify_counts" 2)") | $(ratio "$vc" "$vt") | $(ratio "$vc" "$vd") | <= 1.3 |"
  local vp; vp=$(col "$S/v-peer" 1)
  echo "| peer pipeline: pg_restore -j 2 + amcheck bt_index_check heapallindexed over every B-tree index + pg_dump -Fc -Z0 of the restored copy > /dev/null, same settings | $(sec "$vp") | $(sec "$(col "$S/v-peer" 2)") | $(ratio "$vp" "$vt") | $(ratio "$vp" "$vd") | |"
  echo
  echo "pgdrill verify full / peer pipeline (wall): $(ratio "$vf" "$vp") (goal <= 0.8); CPU: $(ratio "$(col "$S/v-verify_full" 2)" "$(col "$S/v-peer" 2)")."
  echo "pgdrill verify counts / the bare restore into a server whose files are in /dev/shm too (wall): $(ratio "$vc" "$vm"); full / that restore: $(ratio "$vf" "$vm")."
  echo "peer pipeline phases (median ms, share of its wall): $(python3 - "$S/phases-peer" <<'PY'
import statistics, sys
runs = [dict((k, float(v)) for k, v in (kv.split("=") for kv in line.split())) for line in open(sys.argv[1]) if line.strip()]
med = {k: statistics.median(r[k] for r in runs) for k in ("restore", "amcheck", "dump")}
total = sum(med.values()) or 1
print(", ".join("%s %.0f (%.0f%%)" % (k, v, 100 * v / total) for k, v in med.items()))
PY
)"
  if [ -n "${VERIFY_AB:-}" ]; then
    local vs; vs=$(col "$S/v-verify_full_seq" 1)
    echo "| the same, fingerprint=full, sequential (fixtures/runbooks/verify-sequential.yaml: one pg_restore, then schema, then tables and amcheck) | $(sec "$vs") | $(sec "$(col "$S/v-verify_full_seq" 2)") | $(ratio "$vs" "$vt") | $(ratio "$vs" "$vd") | |"
  fi
  if [ -n "${VERIFY_STAGING:-}" ]; then
    local vg; vg=$(col "$S/v-verify_full_staging" 1)
    echo "| the same, fingerprint=full, staging the checked dump in $VERIFY_STAGING | $(sec "$vg") | $(sec "$(col "$S/v-verify_full_staging" 2)") | $(ratio "$vg" "$vt") | $(ratio "$vg" "$vd") | |"
  fi
  if [ -n "${VERIFY_BEFORE:-}" ]; then
    local vb; vb=$(col "$S/v-verify_full_before" 1)
    echo "| the same, fingerprint=full, run by $VERIFY_BEFORE (VERIFY_BEFORE) | $(sec "$vb") | $(sec "$(col "$S/v-verify_full_before" 2)") | $(ratio "$vb" "$vt") | $(ratio "$vb" "$vd") | |"
  fi
  echo
  echo "CPU: user+sys of the command and its children; for pgdrill that includes its throwaway server, for pg_restore the running server's backends are added."
  echo "verify phases (median; integrity and scratch run side by side; after restore, tables and amcheck run side by side, and schema once amcheck has ended):"
  for f in full counts ${VERIFY_AB:+fullseq} ${VERIFY_STAGING:+fullstaging} ${VERIFY_BEFORE:+fullbefore}; do
    echo "- $f: $(phases "$f")"
  done
  # The floor, computed from this run's medians: the critical path verify cannot shorten
  # without weakening what it proves (the archive check, kept before the restore on purpose,
  # beside the server's start; the restore, at best the bare pg_restore's median; amcheck
  # beside the row hashes; the schema once amcheck is done), against the measured wall; the
  # rest (pick, database, roles, record, teardown, process) is pgdrill's own overhead.
  for f in full counts ${VERIFY_BEFORE:+full_before}; do
    python3 - "$S/phases-${f/_/}" "$f" "$vt" "$vp" "$(col "$S/v-verify_$f" 1)" "$vn" <<'PY'
import statistics, sys
path, kind, bare, peer, wall = sys.argv[1], sys.argv[2], int(sys.argv[3]) / 1000, int(sys.argv[4]) / 1000, int(sys.argv[5]) / 1000
fresh = int(sys.argv[6]) / 1000
runs = [dict(kv.split("=") for kv in line.split()) for line in open(path) if line.strip() and not line.startswith("staged_bytes")]
med = lambda k: statistics.median(float(r.get(k, 0)) for r in runs)
segs = ["seg_before", "seg_check", "seg_prepare", "seg_restore", "seg_checks", "seg_schema", "seg_after", "seg_outside"]
print("- %s, the wall cut along its critical path (medians, s): %s" % (kind, ", ".join("%s %.2f" % (k[4:], med(k)) for k in segs)))
print("  the other steps (medians, s): %s" % ", ".join("%s %.2f" % (k, med(k)) for k in ("pick", "scratch_db", "roles", "database_settings", "freshness", "record")))
restore = min(med("seg_restore"), bare)
floor = med("seg_check") + restore + med("seg_checks") + med("seg_schema")
ref, name, goal = (peer, "the peer pipeline", 0.8) if kind.startswith("full") else (bare, "the bare restore", 1.3)
print("  floor of %s: check beside start %.2f + restore %.2f (the lower of its own and the bare pg_restore's) + checks %.2f + schema %.2f = %.2f s = %.2f of %s (goal <= %.1f: %s by the floor); measured %.2f s = %.2f; pgdrill's rest %.2f s"
      % (kind, med("seg_check"), restore, med("seg_checks"), med("seg_schema"), floor, floor / ref, name, goal,
         "reachable" if floor / ref <= goal else "NOT reachable", wall, wall / ref, wall - floor))
# The same floor with the restore into a server started for it (verify's throwaway is
# always new): at the lower of pgdrill's own restore and that baseline's median.
restore_new = min(med("seg_restore"), fresh)
floor_new = med("seg_check") + restore_new + med("seg_checks") + med("seg_schema")
print("  floor of %s with the restore into a new server: check %.2f + restore %.2f (the lower of its own and pg_restore's into a server started for it) + checks %.2f + schema %.2f = %.2f s = %.2f of %s (goal <= %.1f: %s by this floor)"
      % (kind, med("seg_check"), restore_new, med("seg_checks"), med("seg_schema"), floor_new, floor_new / ref, name, goal,
         "reachable" if floor_new / ref <= goal else "NOT reachable"))
PY
  done
  echo "pgdrill verify peak RSS (largest of the runs, pgdrill itself): $((vrss / 1024)) MiB; staged for the restore: $(mib "$staged") MiB (pg_dump -Fc -Z0: $(mib "$(size_of "$S/z0.dump")") MiB)"
  echo "$DBSIZE $(ratio "$bc" "$bz") $(ratio "$bc" "$bgz") $(ratio "$vf" "$vt") $(ratio "$vc" "$vt") $rss_c $vrss $staged $(size_of "$S/z0.dump") $(ratio "$vf" "$vp")" >>"$GROWTH"
  stop_servers
  rm -rf "$S" "$(dirname "$MPD")"
}

if [ "$BENCH" = list ]; then
  # Listing at scale (issue 41): LIST_OBJECTS (default 10000) objects of mixed kinds in an
  # S3-compatible server on loopback (moto), each pgdrill command next to a plain paginated
  # LIST of the same prefix by boto3 in the same run; then LIST_OBJECTS local files and a
  # ledger of LEDGER_LINES (default 100000) lines. LIST_RUNS rounds (default 5), rotated,
  # medians of wall and CPU seconds (user+sys of the command and its children).
  n="${LIST_OBJECTS:-10000}"; runs="${LIST_RUNS:-5}"; lines="${LEDGER_LINES:-100000}"
  L="$WORK/list"; mkdir -p "$L"
  MPORT=$((45000 + RANDOM % 5000))
  moto_server -H 127.0.0.1 -p "$MPORT" >"$L/moto.log" 2>&1 &
  MOTO=$!
  trap 'kill "$MOTO" 2>/dev/null || true; rm -rf "$WORK"' EXIT
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$MPORT/" >/dev/null 2>&1 && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL="http://127.0.0.1:$MPORT" AWS_ALLOW_HTTP=true
  # The same layout in the bucket (prefix p/) and in a local directory: a fifth pgdrill
  # backups of `app` (archive + manifest), a tenth other tools' dumps, the rest WAL segments
  # and foreign files; the local one also gets `erp/ledger.jsonl` of $lines lines.
  python3 - "$MPORT" "$n" "$L/local" "$lines" <<'PY'
import boto3, datetime, gzip, json, os, sys
from concurrent.futures import ThreadPoolExecutor
port, n, local, lines = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
today = datetime.datetime.now(datetime.timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
def stamp(at): return at.strftime("%Y%m%dT%H%M%S.") + "%03dZ" % (at.microsecond // 1000)
def manifest(db, at):
    t = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"schema": "pgdrill.manifest/1", "pgdrill_version": "0.1.0", "database": db,
        "server_version": "15.18", "server_major": 15, "pg_dump_version": "pg_dump (PostgreSQL) 15.18",
        "format": "custom", "codec": "zstd", "level": 3, "cipher": "none",
        "sizes": {"raw": 1, "compressed": 1, "stored": 1}, "sha256": "00",
        "started_at": t, "finished_at": t, "snapshot": "x", "fingerprint": None}).encode()
objs = []
for i in range(1, n // 10 + 1):
    at = today - datetime.timedelta(hours=i)
    name = "app/%s.dump.pgdrill" % stamp(at)
    objs += [(name, b"archive"), (name + ".manifest.json", manifest("app", at))]
gz = gzip.compress(b"-- PostgreSQL database dump\nselect 1;\n")
for i in range(n // 10):
    objs.append(("legacy/legacy_db_%s.sql.gz" % (today - datetime.timedelta(hours=i + 1)).strftime("%Y%m%d_%H%M%S"), gz))
rest = n - len(objs)
for i in range(rest // 2):
    objs.append((".cluster/7300000000000000001/wal/%024X" % (i + 1), b"w"))
for i in range(rest - rest // 2):
    objs.append(("misc/notes-%06d.txt" % i, b"notes"))
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:" + port, region_name="us-east-1")
s3.create_bucket(Bucket="bench")
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda kv: s3.put_object(Bucket="bench", Key="p/" + kv[0], Body=kv[1]), objs))
for key, body in objs:
    path = os.path.join(local, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f: f.write(body)
os.makedirs(os.path.join(local, "erp"), exist_ok=True)
with open(os.path.join(local, "erp", "ledger.jsonl"), "w") as f:
    for i in range(lines):
        f.write(json.dumps({"backup": "%s.dump.pgdrill" % stamp(today - datetime.timedelta(minutes=i)),
                            "verified_at": "2026-01-01T00:00:00Z", "result": "passed"}) + "\n")
at = today - datetime.timedelta(minutes=1)
with open(os.path.join(local, "erp", "%s.dump.pgdrill" % stamp(at)), "wb") as f: f.write(b"archive")
with open(os.path.join(local, "erp", "%s.dump.pgdrill.manifest.json" % stamp(at)), "wb") as f: f.write(manifest("erp", at))
print(len(objs))
PY
  printf 'name: latest\nvars: { storage: ~ }\nsteps:\n  - id: latest\n    uses: backup.latest\n    with: { storage: "{{ vars.storage }}", database: app }\n' >"$L/latest.yaml"
  printf 'defaults:\n  storage: s3://bench/p\n  schedules: [weekly-verify]\nschedules:\n  weekly-verify: { runbook: verify, cron: "30 4 * * sun" }\nprojects:\n  bench:\n    defaults: { connection: "host=127.0.0.1 user=bench" }\n    environments:\n      prod:\n        databases:\n          app: {}\n' >"$L/fleet.yaml"
  # (A command, not a function: `measure` runs it under GNU time.)
  BOTO3_LIST='import boto3, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
n = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="p/"))
assert n > 0'
  kinds=(boto3 list latest prune fleet local_list local_prune ledger)
  nk=${#kinds[@]}
  for round in $(seq 0 $((runs - 1))); do
    for i in $(seq 0 $((nk - 1))); do
      kind=${kinds[$(((round + i) % nk))]}
      case $kind in
        boto3) measure "$L/m" python3 -c "$BOTO3_LIST" "$AWS_ENDPOINT_URL" ;;
        list) measure "$L/m" "$BIN" backups list --storage s3://bench/p --database app --json >/dev/null ;;
        latest) measure "$L/m" "$BIN" run "$L/latest.yaml" --quiet --var storage=s3://bench/p >/dev/null ;;
        prune) measure "$L/m" "$BIN" run prune --quiet --var storage=s3://bench/p --var database=app >/dev/null ;;
        fleet) measure "$L/m" "$BIN" fleet plan "$L/fleet.yaml" verify >/dev/null ;;
        local_list) measure "$L/m" "$BIN" backups list --storage "$L/local" --json >/dev/null ;;
        local_prune) measure "$L/m" "$BIN" run prune --quiet --var storage="$L/local" --var database=app >/dev/null ;;
        ledger) measure "$L/m" "$BIN" backups list --storage "$L/local" --database erp --json >/dev/null ;;
      esac
      cat "$L/m" >>"$L/s-$kind"
    done
  done
  kill "$MOTO" 2>/dev/null || true
  for kind in "${kinds[@]}"; do echo "[bench] $kind (wall_ms cpu_ms rss_kib per round): $(tr '\n' ';' <"$L/s-$kind")" >&2; done
  b=$(col "$L/s-boto3" 1)
  row() {  # kind label goal
    local w; w=$(col "$L/s-$1" 1)
    echo "| $2 | $(sec "$w") | $(sec "$(col "$L/s-$1" 2)") | $(($(col "$L/s-$1" 3) / 1024)) | $(ratio "$w" "$b") | $3 |"
  }
  echo
  echo "## Listing $n objects (moto on loopback; local files; a $lines-line ledger), median of $runs rotated rounds"
  echo
  echo "| command | wall (s) | CPU (s) | peak RSS (MiB) | / boto3 LIST | goal |"
  echo "|---|---|---|---|---|---|"
  row boto3 "boto3 list_objects_v2, paginated, prefix p/ (the plain LIST)" ""
  row list "pgdrill backups list --database app --json (s3://)" "<= 2x"
  row latest "pgdrill backup.latest of app (s3://)" "<= 2x"
  row prune "pgdrill run prune, dry run, app (s3://)" "<= 2x"
  row fleet "pgdrill fleet plan (a target on s3://; lists nothing)" "<= 2x"
  row local_list "pgdrill backups list --json, $n local files" "< 1 s"
  row local_prune "pgdrill run prune, dry run, app, local files" ""
  row ledger "pgdrill backups list --database erp, a $lines-line ledger" "< 1 s"
  echo
  echo "CPU: user+sys of the command and its children (moto's own CPU is in neither column)."
  exit 0
fi

# DBSIZE=2.5: one size, in GB, as SIZES takes them (a growth table of one line).
if [ -n "${DBSIZE:-}" ] && [ -z "${SIZES:-}" ]; then SIZES="$DBSIZE"; fi
if [ -n "${SIZES:-}" ]; then
  for gb in $SIZES; do
    bench_size "$(awk -v g="$gb" 'BEGIN { printf "%d", g / 0.6 * 30 + 0.5 }')" "$(awk -v g="$gb" 'BEGIN { printf "%d", g / 0.6 * 400000 + 0.5 }')"
  done
  echo
  echo "## Growth (one line per size; ratios against the same baselines as above)"
  echo
  echo "| database (MiB) | backup / pg_dump -Z0 | backup / gzip\|openssl | verify full / pg_restore | verify counts / pg_restore | verify full / peer pipeline | backup peak RSS (MiB) | verify peak RSS (MiB) | staged (MiB) | pg_dump -Fc -Z0 (MiB) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  while read -r db r1 r2 r3 r4 rb rv st z0 vp; do
    echo "| $((db / 1048576)) | $r1 | $r2 | $r3 | $r4 | ${vp:--} | $((rb / 1024)) | $([ "$rv" = - ] && echo - || echo $((rv / 1024))) | $([ "$st" = - ] && echo - || mib "$st") | $(mib "$z0") |"
  done <"$GROWTH"
else
  SCALE="${SCALE:-30}"
  bench_size "$SCALE" "$(awk -v s="$SCALE" 'BEGIN { printf "%d", s * 400000 / 30 }')"
fi
