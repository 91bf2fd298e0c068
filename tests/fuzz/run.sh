#!/bin/sh
# Runs one libFuzzer harness for a set time on a working corpus (new inputs go there) plus the
# committed one, and prints one summary line: executions, coverage, new crashes. Exits 1 when the
# run found a crash, which is left in BUILD/crashes/TARGET-*.
# usage: run.sh BUILD_DIR TARGET SECONDS
b=$1 t=$2 secs=$3
case $t in
roi_align) max_len=1024 ;;
annotations | config) max_len=16384 ;;
*) max_len=65536 ;;
esac
work=$b/corpus/$t crashes=$b/crashes log=$b/logs/$t.log
mkdir -p "$work" "$crashes" "$b/logs"
dict=""
[ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
before=$(ls "$crashes" | grep -c "^$t-")
OMP_NUM_THREADS=1 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$b/fuzz_$t" -max_total_time="$secs" -max_len="$max_len" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/$t-" $dict "$work" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1
rc=$?
after=$(ls "$crashes" | grep -c "^$t-")
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
echo "fuzz $t: ${execs:-?} execs in ${secs}s, cov ${cov:-?}, ft ${ft:-?}," \
    "corpus $(ls "$work" | wc -l), new crashes $((after - before)), exit $rc (log $log)"
[ "$rc" = 0 ] && [ "$after" = "$before" ]
