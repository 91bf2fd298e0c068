#!/bin/sh
# Runs the suite (the command after LOG), streaming its output and keeping a copy in LOG. When it
# fails, the failed tests and their assertion lines are repeated at the end, where the tail of a
# CI log shows them; the exit code is the suite's.
log=$1
shift
rc_file="$log.rc"
rm -f "$rc_file"
{ "$@" 2>&1; echo $? > "$rc_file"; } | tee "$log"
rc=$(cat "$rc_file" 2>/dev/null || echo 1)
rm -f "$rc_file"
if [ "$rc" != 0 ]; then
    echo "---- what failed (whole output in $log) ----"
    grep -a -E '\[(FAIL|----)\]|Assertion Failed|CRASH|[Tt]imed out|ERROR: AddressSanitizer|runtime error:' "$log" |
        grep -a -v 'Running thread' | cut -c1-600 | tail -n 60
    echo "---- failed tests ----"
    grep -a -E '\[FAIL\]' "$log" | cut -c1-200
fi
exit "$rc"
