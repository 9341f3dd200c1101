#!/usr/bin/env bash
# Runs each argument as a shell command line, all at once, each in a process group of its own,
# every output line prefixed with `[N]` (its position). Waits for all; exits 0 only if every one
# did, and says which did not. `make test-e2e` runs its e2e passes in two such lanes: most of an
# e2e spec's time is waiting on a Prosody, so two lanes share two cores well.
#
# Ctrl-C or SIGTERM: each lane's process group is sent SIGTERM (by the PIDs recorded here, never
# by name), so that each scripts/run-e2e.sh stops its own Prosody servers and removes its dir.
#
# Usage: scripts/in-parallel.sh 'COMMAND LINE' ['COMMAND LINE'...]
set -uo pipefail

pids=()
# shellcheck disable=SC2317 # runs from the traps
stop() {
	trap "" INT TERM
	local pid
	for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
	wait
	exit 130
}
trap stop INT TERM

n=0
for line in "$@"; do
	n=$((n + 1))
	# setsid in a background job (never a group leader here) keeps the PID: the group is $!.
	# The prefixing filter ignores Ctrl-C and TERM (sent to this script's group): it ends when
	# its lane does, so that the lane's cleanup messages still have a reader.
	setsid bash -c "$line" > >(trap "" INT TERM && exec sed -u "s/^/[$n] /") 2>&1 &
	pids+=("$!")
done

failed=()
n=0
for pid in "${pids[@]}"; do
	n=$((n + 1))
	wait "$pid" || failed+=("[$n] $(sed -n "${n}p" <(printf '%s\n' "$@"))")
done
wait # the output filters
if [ ${#failed[@]} -gt 0 ]; then
	printf 'in-parallel: failed: %s\n' "${failed[@]}" >&2
	exit 1
fi
