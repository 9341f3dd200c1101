#!/usr/bin/env bash
# Runs a command in a mount namespace of its own (root only), so that the tests' real faults (a
# small tmpfs filled up, a read-only remount) never reach the machine's mounts: whatever a test
# mounts disappears with the namespace, even if the run is killed.
#
# Usage: scripts/private-mounts.sh COMMAND [ARGS...]
# Tests that mount refuse to do so outside such a namespace (LRB_PRIVATE_MOUNTS tells them).
set -euo pipefail
if [ "${LRB_PRIVATE_MOUNTS:-}" = 1 ]; then
	exec "$@"
fi
if ! unshare --mount --propagation private true 2>/dev/null; then
	echo "private-mounts: cannot make a mount namespace (run as root with util-linux's unshare)" >&2
	exit 1
fi
export LRB_PRIVATE_MOUNTS=1
exec unshare --mount --propagation private -- "$@"
