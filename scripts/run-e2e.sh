#!/usr/bin/env bash
# `make test-e2e`: runs the end-to-end specs (`busted spec/e2e`) inside a temp dir of their own
# (exported as TMPDIR), with the module installed into that dir. Whatever ends the run (success,
# failure, Ctrl-C, SIGTERM), the Prosody servers the specs started and that still run are stopped
# (by the PIDs recorded in that dir, see spec/helpers/prosody.lua; never by name) and the dir is
# removed, immutable files included. Exits with busted's status.
#
# Usage: scripts/run-e2e.sh [BUSTED_ARGS...]
# Environment: LUA (default lua5.4); E2E_PROSODY, the Prosody versions the specs run on (see
# spec/helpers/prosody.lua); E2E_PLUGIN_DIR to test an already installed plugin folder instead of
# `make install-plugin` into the run's dir, and E2E_PLUGIN_DIR_LUA52 the same for 0.11 (`make
# install-plugin-lua52`, only if E2E_PROSODY names 0.11); TMPDIR (where the run's dir is made).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

run=$(mktemp -d "${TMPDIR:-/tmp}/lrb-e2e-run.XXXXXX") || exit 1
busted_pid=

# shellcheck disable=SC2317 # ours and cleanup run from the traps
# The recorded PIDs that still belong to this run: the process's command line names this run's
# dir (its config file), so a PID since reused by another process is never signalled.
ours() {
	local file pid
	for file in "$run"/*/launched.pid "$run"/*/prosody.pid; do
		[ -f "$file" ] || continue
		while read -r pid; do
			[[ $pid =~ ^[0-9]+$ ]] || continue
			tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$run/" && echo "$pid"
		done <"$file"
	done | sort -u
}

# shellcheck disable=SC2317
cleanup() {
	local status=$? pids _
	trap - EXIT
	# A second Ctrl-C or TERM must not cut the cleanup short, nor a reader of our output that
	# is gone (SIGPIPE on the next message: e.g. in-parallel.sh's filter, killed by the Ctrl-C).
	trap "" INT TERM PIPE
	if [ -n "$busted_pid" ]; then # interrupted: stop busted's process group (it re-runs itself)
		kill -TERM -- "-$busted_pid" 2>/dev/null
		wait "$busted_pid" 2>/dev/null
	fi
	mapfile -t pids < <(ours)
	if [ ${#pids[@]} -gt 0 ]; then
		echo "run-e2e: stopping Prosody left running by the specs: PID ${pids[*]}" >&2
		kill -TERM "${pids[@]}" 2>/dev/null
		for _ in $(seq 50); do
			[ -n "$(ours)" ] || break
			sleep 0.1
		done
		mapfile -t pids < <(ours)
		[ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null
	fi
	# A spec makes a dump file immutable (chattr +i); an interrupted run must not leave it behind.
	chattr -R -i "$run" 2>/dev/null
	rm -rf "$run"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${E2E_PLUGIN_DIR:-}" ]; then
	E2E_PLUGIN_DIR=$run/plugins
	"${MAKE:-make}" -s --no-print-directory install-plugin PLUGIN_DIR="$E2E_PLUGIN_DIR" || exit 1
fi
export E2E_PLUGIN_DIR
if [ -z "${E2E_PLUGIN_DIR_LUA52:-}" ] && [[ " ${E2E_PROSODY:-} " =~ [\ ,]0\.11[\ ,] ]]; then
	E2E_PLUGIN_DIR_LUA52=$run/plugins-lua52
	"${MAKE:-make}" -s --no-print-directory install-plugin-lua52 PLUGIN_DIR="$E2E_PLUGIN_DIR_LUA52" || exit 1
fi
[ -z "${E2E_PLUGIN_DIR_LUA52:-}" ] || export E2E_PLUGIN_DIR_LUA52
export TMPDIR=$run

# In the background and in a process group of its own (setsid keeps the PID), so that a signal to
# this script is handled at once and cleanup can stop busted and the lua5.4 it runs the specs in.
# In a mount namespace of its own, so that specs can make real faults (a full tmpfs, a read-only
# remount) without touching the machine's mounts.
setsid scripts/private-mounts.sh busted --lua="${LUA:-lua5.4}" "$@" spec/e2e &
busted_pid=$!
wait "$busted_pid"
status=$?
busted_pid=
exit "$status"
