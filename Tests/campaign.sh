#!/usr/bin/env bash
# A long seeded simulator campaign: every seeded scenario for N seeds (f=2 scenarios for N2,
# default N/5 because an f=2 run costs several times an f=1 run), all failing seeds kept, not
# only the first. Prints seeds per second per scenario and every failing seed with its replay line.
# Usage, from the project root:  Tests/campaign.sh N [N2] [JOBS] [CHUNK]
#   JOBS: jobs run in parallel (default: the number of cores). A long scenario is split into
#   shards of consecutive seeds (MINBFT_SEED_OFFSET) so the jobs stay busy to the end.
#   CHUNK: k (default 0) runs each scenario's seeds k*count .. (k+1)*count-1, so a long campaign
#   can run as several shorter ones over disjoint seed ranges (chunks 0, 1, 2, ...).
set -u
cd "$(dirname "$0")/.."
n=${1:?usage: Tests/campaign.sh N [N_f2] [JOBS]}
n2=${2:-$(( n / 5 > 0 ? n / 5 : 1 ))}
jobs=${3:-$(nproc)}
chunk=${4:-0}
# A slow-network seed simulates tens of seconds of delays (about 0.3 s of CPU per f=1 seed with
# the memoized verifiers, several seconds per f=2 seed, against 0.02-0.05 s for the others). The
# f=1 one runs all N seeds, in shards; the f=2 one runs a tenth of N2.
slow2=$(( n2 / 10 > 0 ? n2 / 10 : 1 ))

dotnet build Tests/Core/Core.Tests.csproj -c Release -v q -nologo >/dev/null || { echo "build failed"; exit 2; }

# scenario (test method name), its seed count and the shards it is split into; the slow
# scenarios come first so that no long shard starts last
scenarios=(
  "Campaign_20_seeds_f1_on_a_slow_network $n 8"
  "Campaign_5_seeds_f2_on_a_slow_network $slow2 2"
  "Agreement_integrity_and_liveness_hold_for_500_hostile_seeds_with_f1 $n"
  "View_change_campaign_faulty_or_crashed_primary_150_seeds_with_f1 $n"
  "Crash_recovery_campaign_one_replica_restarts_in_hostile_runs_f1 $n"
  "Crash_between_writes_campaign_a_replica_crashes_right_after_a_durable_write_f1 $n"
  "Agreement_integrity_and_liveness_hold_for_200_hostile_seeds_with_f2 $n2"
  "View_change_campaign_faulty_or_crashed_primary_60_seeds_with_f2 $n2"
  "Crash_recovery_campaign_one_replica_restarts_in_hostile_runs_f2 $n2"
  "Crash_between_writes_campaign_a_replica_crashes_right_after_a_durable_write_f2 $n2"
  "Agreement_and_liveness_hold_with_no_faults_f3 $n2"
  "Usig_rotation_campaign_a_replica_loses_its_usig_state_and_rejoins_under_a_new_epoch_f1 $n"
  "Usig_rotation_campaign_a_replica_loses_its_usig_state_and_rejoins_under_a_new_epoch_f2 $n2"
  "Byzantine_checkpoints_campaign_f_rogue_replicas_send_bogus_checkpoints_f1 $n"
  "Byzantine_primary_after_view_0_campaign_equivocates_and_sends_bogus_new_views_f1 $n"
  "Byzantine_checkpoints_campaign_f_rogue_replicas_send_bogus_checkpoints_f2 $n2"
  "Byzantine_primary_after_view_0_campaign_equivocates_and_sends_bogus_new_views_f2 $n2"
  "Forged_replies_campaign_f_tampering_replicas_sign_wrong_results_f1 $n"
  "Forged_replies_campaign_f_tampering_replicas_sign_wrong_results_f2 $n2"
  "Client_eviction_campaign_more_clients_than_records_under_replays_f1 $n"
  "Client_eviction_campaign_more_clients_than_records_under_replays_f2 $n2"
)

out=$(mktemp -d)
echo "campaign: $n seeds per f=1 scenario, $n2 per f=2/f=3 scenario ($slow2 on a slow network with f=2), seed chunk $chunk, $jobs at a time; logs in $out"
start=$(date +%s)
run_one() {
  local name=$1 seeds=$2 offset=$3 out=$4
  # one seed at a time per shard: the shards themselves keep every core busy
  MINBFT_SIM_THREADS=1 MINBFT_SEEDS=$seeds MINBFT_SEED_OFFSET=$offset MINBFT_KEEP_GOING=1 dotnet test Tests/Core/Core.Tests.csproj -c Release --no-build \
    --filter "FullyQualifiedName~.$name" --logger "console;verbosity=detailed" >"$out/$name.$offset.log" 2>&1
  echo "$name.$offset exit=$?" >>"$out/status"
}
export -f run_one
# one line per shard: name, seeds in the shard, offset of its first seed
for entry in "${scenarios[@]}"; do
  read -r name seeds shards <<<"$entry"
  shards=${shards:-1}
  size=$(( (seeds + shards - 1) / shards ))
  base=$(( chunk * seeds ))
  for (( offset = 0; offset < seeds; offset += size )); do
    echo "$name $(( seeds - offset < size ? seeds - offset : size )) $(( base + offset ))"
  done
done | xargs -P "$jobs" -L 1 bash -c 'run_one "$0" "$1" "$2" '"$out"

echo
printf '%-84s %s\n' "scenario" "seeds, seconds summed over its shards, seeds/s, failures"
status=0
for entry in "${scenarios[@]}"; do
  name=${entry%% *}
  lines=$(grep -h "campaign $name:" "$out/$name".*.log)
  # every shard must have printed its summary and exited 0
  logs=$(ls "$out/$name".*.log | wc -l)
  if [ "$(printf '%s\n' "$lines" | grep -c .)" -ne "$logs" ] || grep -q "^$name\.[0-9]* exit=[^0]" "$out/status"; then status=1; fi
  summary=$(printf '%s\n' "$lines" | sed -E 's/.*: ([0-9]+) seeds \(from seed [0-9]+\) in ([0-9.]+)s .*, ([0-9]+) failed;.*/\1 \2 \3/' |
    awk '{ seeds += $1; secs += $2; failed += $3 } END { if (secs > 0) printf "%d seeds, %.0f s, %.2f seeds/s, %d failed", seeds, secs, seeds / secs, failed }')
  printf '%-84s %s\n' "$name" "${summary:-no summary (see $out/$name.*.log)}"
done
echo
if grep -qh "^ *FAILED " "$out"/*.log; then
  echo "failing seeds:"
  grep -h -A1 "^ *FAILED " "$out"/*.log | sed 's/^ */  /' | grep -v '^  --$'
  status=1
else
  echo "no failing seed"
fi
echo "wall time: $(( $(date +%s) - start )) s"
exit $status
