#!/usr/bin/env bash
# Benchmarks: pgdrill next to the plain shell commands it replaces, in one run, as ratios.
# Not part of the tests (timings never are). Usage: bash ci/bench.sh [runs]
#
#   startup   postgres.ephemeral (step start -> first successful query) vs
#             initdb + pg_ctl start -w + psql (native) and docker run + psql loop (docker)
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

declare -A results
for kind in pgdrill_native shell_native pgdrill_docker shell_docker; do
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
echo
echo "## Ephemeral server start-up (median of $RUNS, ms, step start -> first successful query)"
echo
echo "| provider | pgdrill | shell equivalent | pgdrill / shell | goal |"
echo "|---|---|---|---|---|"
echo "| native | ${results[pgdrill_native]} | ${results[shell_native]} (initdb + pg_ctl -w + psql) | $(ratio "${results[pgdrill_native]}" "${results[shell_native]}") | <= 2000 |"
echo "| docker | ${results[pgdrill_docker]} | ${results[shell_docker]} (docker run + psql poll) | $(ratio "${results[pgdrill_docker]}" "${results[shell_docker]}") | <= 3000 |"
