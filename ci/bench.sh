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
#   VERIFY_AB=1 adds a kind of verify run to the rounds: fingerprint=full with the runbook as
#   it was before its checks ran side by side (fixtures/runbooks/verify-sequential.yaml: one
#   pg_restore, then schema, then tables and amcheck), so what the overlap buys is measured
#   in the same run.
#   VERIFY_STAGING=DIR adds fingerprint=full staging the checked dump in DIR (/dev/shm keeps
#   it in memory), so what writing it to disk costs is measured in the same run.
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
#   steps     (only with BENCH=steps) the engine alone: a runbook of STEPS (default 10000)
#             trivial steps (`sleep 0s`), wall seconds and peak RSS, without and with
#             --report and --junit. The goal: under 10 s and 100 MB; the cost must grow
#             linearly with the number of steps (it was n²: every step converted every
#             earlier step's outputs for its templates, and JUnit counted shared names per step).
#   evidence  (only with BENCH=evidence) what signing and chaining add to a run: a runbook of
#             one trivial step run EVIDENCE_RUNS times (default 20) without and with
#             --signing-key/--evidence, median wall ms of each; the goal is under 50 ms added.
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
declare -A results
[ "$BENCH" = backup ] || [ "$BENCH" = verify ] || [ "$BENCH" = store ] || for kind in pgdrill_native shell_native pgdrill_docker shell_docker; do
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
trap 'stop_servers; rm -rf "$WORK"' EXIT
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
measure() {
  local out="$1"; shift
  local tf="$WORK/time.$RANDOM" t0 t1 hwm=0 pid h
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
  local DPD="$S/restore-default" DPORT=$((55000 + RANDOM % 5000))
  stop_servers  # the source is not needed any more: its memory and CPU stay out of the way
  start_server "$TPD" "$TPORT" $THROWAWAY
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
  }
  verify_run() {  # fingerprint [runbook] [tag] [staging directory]
    local rep="$S/vrep-$1${3:-}"
    rm -rf "$rep"
    settle
    measure "$S/m" "$BIN" run "${2:-verify}" --quiet --var storage="$S/st-full" --var database=bench --var provider=native \
      --var jobs=2 --var fingerprint="$1" --var force=true ${4:+--var staging="$4"} --report "$rep" --junit "$rep.xml" >/dev/null
    python3 - "$rep/run.json" >>"$S/phases-$1${3:-}" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))["suites"][0]["steps"]
print(" ".join("%s=%.2f" % (s["label"], s["duration"]) for s in steps if s["phase"]["kind"] == "main"))
PY
    # What was staged for the restore: backup.check logs it (in the JUnit).
    echo "staged_bytes=$(cat "$rep.xml" | sed -n 's/.*staged the checked dump (\([0-9]*\) bytes).*/\1/p' | head -n 1)" >>"$S/phases-$1${3:-}"
  }
  local vkinds=(pgr_throwaway pgr_default verify_full verify_counts)
  # VERIFY_AB=1: also the runbook as it was before its checks ran side by side
  # (fixtures/runbooks/verify-sequential.yaml), to measure what the overlap buys.
  if [ -n "${VERIFY_AB:-}" ]; then vkinds+=(verify_full_seq); fi
  # VERIFY_STAGING=DIR: also fingerprint=full staging the checked dump in DIR (/dev/shm: in
  # memory), to measure what writing the staged dump to disk costs.
  if [ -n "${VERIFY_STAGING:-}" ]; then vkinds+=(verify_full_staging); fi
  local nk=${#vkinds[@]}
  for round in $(seq 0 $((VRUNS - 1))); do
    for i in $(seq 0 $((nk - 1))); do
      kind=${vkinds[$(((round + i) % nk))]}
      case $kind in
        pgr_throwaway) baseline_restore "$TPD" "$TPORT" ;;
        pgr_default) baseline_restore "$DPD" "$DPORT" ;;
        verify_full) verify_run full ;;
        verify_counts) verify_run counts ;;
        verify_full_seq) verify_run full fixtures/runbooks/verify-sequential.yaml seq ;;
        verify_full_staging) verify_run full verify staging "$VERIFY_STAGING" ;;
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
  echo "| pgdrill run verify, jobs=2, fingerprint=full (start server, check, restore, compare, amcheck heapallindexed) | $(sec "$vf") | $(sec "$(col "$S/v-verify_full" 2)") | $(ratio "$vf" "$vt") | $(ratio "$vf" "$vd") | <= 1.6 |"
  echo "| pgdrill run verify, jobs=2, fingerprint=counts (amcheck structure only) | $(sec "$vc") | $(sec "$(col "$S/v-verify_counts" 2)") | $(ratio "$vc" "$vt") | $(ratio "$vc" "$vd") | <= 1.3 |"
  if [ -n "${VERIFY_AB:-}" ]; then
    local vs; vs=$(col "$S/v-verify_full_seq" 1)
    echo "| the same, fingerprint=full, sequential (fixtures/runbooks/verify-sequential.yaml: one pg_restore, then schema, then tables and amcheck) | $(sec "$vs") | $(sec "$(col "$S/v-verify_full_seq" 2)") | $(ratio "$vs" "$vt") | $(ratio "$vs" "$vd") | |"
  fi
  if [ -n "${VERIFY_STAGING:-}" ]; then
    local vg; vg=$(col "$S/v-verify_full_staging" 1)
    echo "| the same, fingerprint=full, staging the checked dump in $VERIFY_STAGING | $(sec "$vg") | $(sec "$(col "$S/v-verify_full_staging" 2)") | $(ratio "$vg" "$vt") | $(ratio "$vg" "$vd") | |"
  fi
  echo
  echo "CPU: user+sys of the command and its children; for pgdrill that includes its throwaway server, for pg_restore the running server's backends are added."
  echo "verify phases (median; integrity and scratch run side by side; after restore, tables and amcheck run side by side, and schema once amcheck has ended):"
  for f in full counts ${VERIFY_AB:+fullseq} ${VERIFY_STAGING:+fullstaging}; do
    echo "- $f: $(phases "$f")"
  done
  echo "pgdrill verify peak RSS (largest of the runs, pgdrill itself): $((vrss / 1024)) MiB; staged for the restore: $(mib "$staged") MiB (pg_dump -Fc -Z0: $(mib "$(size_of "$S/z0.dump")") MiB)"
  echo "$DBSIZE $(ratio "$bc" "$bz") $(ratio "$bc" "$bgz") $(ratio "$vf" "$vt") $(ratio "$vc" "$vt") $rss_c $vrss $staged $(size_of "$S/z0.dump")" >>"$GROWTH"
  stop_servers
  rm -rf "$S"
}

if [ -n "${SIZES:-}" ]; then
  for gb in $SIZES; do
    bench_size "$(awk -v g="$gb" 'BEGIN { printf "%d", g / 0.6 * 30 + 0.5 }')" "$(awk -v g="$gb" 'BEGIN { printf "%d", g / 0.6 * 400000 + 0.5 }')"
  done
  echo
  echo "## Growth (one line per size; ratios against the same baselines as above)"
  echo
  echo "| database (MiB) | backup / pg_dump -Z0 | backup / gzip\|openssl | verify full / pg_restore | verify counts / pg_restore | backup peak RSS (MiB) | verify peak RSS (MiB) | staged (MiB) | pg_dump -Fc -Z0 (MiB) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  while read -r db r1 r2 r3 r4 rb rv st z0; do
    echo "| $((db / 1048576)) | $r1 | $r2 | $r3 | $r4 | $((rb / 1024)) | $([ "$rv" = - ] && echo - || echo $((rv / 1024))) | $([ "$st" = - ] && echo - || mib "$st") | $(mib "$z0") |"
  done <"$GROWTH"
else
  SCALE="${SCALE:-30}"
  bench_size "$SCALE" "$(awk -v s="$SCALE" 'BEGIN { printf "%d", s * 400000 / 30 }')"
fi
