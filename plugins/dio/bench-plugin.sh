#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# nbdkit dio beside nbdkit file, same file, same nbdkit -t: a thin wrapper
# over bench/run-nbd.sh (which also runs dionbd, qemu-nbd and fio's io_uring
# engine; see bench/README.md).
#   plugins/dio/bench-plugin.sh [--size 1G] [--runtime 5] [--threads 16]
#                               [--rows "qd32-randread ..."] [--dio-args "engine=psync"]
#                               [any other run-nbd.sh option]
# Env: DIO_BUILD (build dir with plugins/dio/nbdkit-dio-plugin.so), DIO_BENCH_DIR.
set -euo pipefail

args=(--servers "nbdkit-file nbdkit-dio")
rows="qd1-randread qd32-randread qd32-randwrite qd8-read-1m"
while [ $# -gt 0 ]; do
	case $1 in
	--threads) args+=(--nbdkit-threads "$2"); shift 2 ;;
	--dio-args) args+=(--plugin-args "$2"); shift 2 ;;	# plugin parameters
	--rows) rows=$2; shift 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
exec "$(dirname "$0")/../../bench/run-nbd.sh" "${args[@]}" --rows "$rows"
