#!/usr/bin/env bash
# Runs the CI path (CI=true bash .ci/run: Redis, then the README's test command) N times and
# lists every test that failed at least once, with its count.
#
#   Tests/flake-hunt.sh N
#
# Environment:
#   FLAKE_HUNT_TIMEOUT  seconds one run may take before it is killed (default 1800)
#   FLAKE_HUNT_DIR      where the logs go (default: a new temp dir, printed at the start)
#   FLAKE_HUNT_CMD      the command of one run (default: CI=true bash .ci/run)
#
# Each run's log is kept as run-K.log. A run that hangs is stopped after FLAKE_HUNT_TIMEOUT, and
# so is every process it started (found by a marker in their environment, killed by id).
# Exit status: 0 if every run passed, 1 otherwise.
set -uo pipefail

usage() { echo "usage: $0 N   (N = number of runs, >= 1)" >&2; exit 2; }
[ $# -eq 1 ] && [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage
runs=$1
timeout_s=${FLAKE_HUNT_TIMEOUT:-1800}
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || { echo "FLAKE_HUNT_TIMEOUT must be a positive number of seconds" >&2; exit 2; }
cmd=${FLAKE_HUNT_CMD:-"CI=true bash .ci/run"}

cd "$(dirname "$0")/.." || exit 2
dir=${FLAKE_HUNT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/flake-hunt.XXXXXX")}
mkdir -p "$dir" || exit 2
summary="$dir/summary.tsv"   # run, result, seconds, tests line, load averages
failures="$dir/failures.tsv" # run, test
durations="$dir/durations.tsv" # run, test, milliseconds
: >"$summary"; : >"$failures"; : >"$durations"
echo "flake hunt: $runs run(s) of '$cmd' in $(pwd), timeout ${timeout_s}s each, logs in $dir"

# Processes a run started carry this marker in their environment, so that after a timeout they,
# and only they, can be found and stopped (test hosts, silo processes, redis-servers, build nodes).
marker_pids() {  # marker_pids VALUE: ids of live processes whose environment has FLAKE_HUNT_RUN=VALUE
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "FLAKE_HUNT_RUN=$1" && echo "${p#/proc/}"
  done
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Ctrl-C or TERM: stop the current run (timeout passes the signal on) and finish with the summary.
interrupted=0
child=""
trap 'interrupted=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' INT TERM

start_all=$(now_ms)
for run in $(seq 1 "$runs"); do
  log="$dir/run-$run.log"
  tag="$$-$run"
  echo "run $run/$runs: started $(date '+%H:%M:%S') (log $log)"
  # The machine's 1-minute load average, sampled every 30 s: other work slows a run down.
  ( trap 'kill $! 2>/dev/null; exit 0' TERM
    while :; do cut -d' ' -f1 /proc/loadavg 2>/dev/null; sleep 30 & wait $!; done ) >"$dir/load-$run.txt" &
  sampler=$!
  start=$(now_ms)
  FLAKE_HUNT_RUN=$tag timeout --kill-after=30 "$timeout_s" bash -c "$cmd" >"$log" 2>&1 &
  child=$!
  wait "$child"; status=$?
  # A trapped signal ends the first wait early; the run itself ends soon after.
  while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
  child=""
  seconds=$(( ($(now_ms) - start + 500) / 1000 ))
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  load=$(awk '{ s += $1; if ($1 > m) m = $1; n++ } END { if (n) printf "load avg %.1f max %.1f", s / n, m; else printf "load -" }' "$dir/load-$run.txt")
  leftover=$(marker_pids "$tag" | tr '\n' ' ')
  if [ -n "$leftover" ]; then
    # Build servers (MSBuild nodes, the compiler server) outlive a normal run; anything else
    # left behind after a timeout is the run's own and is stopped by its id.
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ] || [ "$interrupted" -eq 1 ]; then
      echo "  stopping processes left by the stopped run: $leftover"
      # shellcheck disable=SC2086
      kill -KILL $leftover 2>/dev/null
    fi
  fi

  # The closing line of .ci/run, or the same sum over dotnet test's summaries for another command.
  tests_line=$(grep -E '^tests: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  [ -n "$tests_line" ] || tests_line=$(awk '/^ *Passed: *[0-9]+ *$/ { p += $2; seen = 1 } /^ *Failed: *[0-9]+ *$/ { f += $2; seen = 1 }
    END { if (seen) printf "tests: %d passed, %d failed\n", p, f }' "$log")
  # "  Failed MinBft.Tests.X.Y [12 s]" (VSTest console logger, normal verbosity).
  grep -E '^ +Failed [A-Za-z_]' "$log" | sed -E 's/^ +Failed +//; s/ \[[^]]*\]$//' | sort -u \
    | awk -v r="$run" '{ print r "\t" $0 }' >>"$failures"
  # Durations of every test that finished, for the slowest list.
  grep -E '^ +(Passed|Failed) [A-Za-z_].* \[[^]]*\]$' "$log" | awk -v r="$run" '
    { line = $0; sub(/^ +(Passed|Failed) +/, "", line)
      d = line; sub(/.* \[/, "", d); sub(/\]$/, "", d); name = line; sub(/ \[[^]]*\]$/, "", name)
      ms = 0; n = split(d, parts, " ")
      for (i = 1; i < n; i += 2) {
        v = parts[i]; u = parts[i + 1]; sub(/^</, "", v)
        if (u == "ms") ms += v; else if (u == "s") ms += v * 1000; else if (u == "m") ms += v * 60000; else if (u == "h") ms += v * 3600000
      }
      print r "\t" name "\t" ms }' >>"$durations"

  if [ "$status" -eq 0 ] && grep -q '^INTERMITTENT:' "$log"; then
    result="intermittent (.ci/run passed it on a second run)"  # counted as a failed run here
  elif [ "$status" -eq 0 ]; then
    result=pass
  elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    result="fail (timed out after ${timeout_s}s)"
  elif grep -q 'The active test run was aborted' "$log"; then
    result="fail (test host aborted, exit $status)"
  elif [ -z "$tests_line" ]; then
    result="fail (exit $status, no test summary: build or setup failed?)"
  else
    result="fail (exit $status)"
  fi
  [ "$interrupted" -eq 1 ] && [ "$status" -ne 0 ] && result="fail (interrupted)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$result" "$seconds" "${tests_line:-"-"}" "$load" >>"$summary"
  echo "  $result in $seconds s  $tests_line ($load)"
  [ "$interrupted" -eq 1 ] && { echo "interrupted: stopping after run $run"; break; }
done
total=$(( ($(now_ms) - start_all + 500) / 1000 ))

echo
echo "== runs =="
awk -F'\t' '{ printf "run %-3s %-40s %6s s  %-30s %s\n", $1, $2, $3, $4, $5 }' "$summary"
echo
echo "== tests that failed at least once (failures/runs) =="
done_runs=$(wc -l <"$summary")
if [ -s "$failures" ]; then
  cut -f2 "$failures" | sort | uniq -c | sort -rn | awk -v n="$done_runs" '{ c = $1; $1 = ""; sub(/^ /, ""); printf "%3d/%d  %s\n", c, n, $0 }'
else
  echo "none"
fi
failed_runs=$(awk -F'\t' '$2 != "pass"' "$summary" | wc -l)
echo
echo "== slowest tests (mean over runs) =="
awk -F'\t' '{ s[$2] += $3; c[$2]++ } END { for (t in s) printf "%8.1f s  %s\n", s[t] / c[t] / 1000, t }' "$durations" | sort -rn | head -n 10
echo
echo "total: $done_runs run(s), $failed_runs failed, wall time $total s" \
  "(mean $(( total / (done_runs > 0 ? done_runs : 1) )) s per run); logs in $dir"
[ "$failed_runs" -eq 0 ] && [ "$done_runs" -eq "$runs" ]
