#!/bin/bash
# Runs every end-to-end test (tests/e2e/test_*.sh), each a separate process
# with its own nodes and directories, and prints "N passed, N failed".
set -u
cd "$(dirname "$0")"
passed=0 failed=0 failures=()
for t in test_*.sh; do
	if [ -n "${E2E_ONLY:-}" ] && [[ "$t" != *"$E2E_ONLY"* ]]; then continue; fi
	if timeout 300 bash "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$t")
	fi
done
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
