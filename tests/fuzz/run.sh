#!/bin/sh
# Runs one libFuzzer harness for a set time on a working corpus (new inputs go there) plus the
# committed one, and prints one summary line: executions, coverage, crashes. Exits 1 when the run
# found a crash in mrcnn, which is left in BUILD/crashes/TARGET-*.
#
# The HDF5 targets (weights, checkpoint) run in libFuzzer's fork mode and go on after a crash:
# HDF5 1.10 itself crashes or hangs on some damaged files (see asan.supp) every few hundred or
# thousand inputs.
# Each crash is replayed; one whose first frame outside libc is in libhdf5 moves to
# BUILD/crashes-hdf5/ and is counted apart (timeouts and out-of-memory too: their stack is where
# the alarm or the allocation hit), one that does not come back moves to BUILD/crashes-flaky/,
# anything else is ours and fails the target.
# usage: run.sh BUILD_DIR TARGET SECONDS
b=$1 t=$2 secs=$3
case $t in
roi_align) max_len=1024 ;;
annotations | config) max_len=16384 ;;
*) max_len=65536 ;;
esac
fork=""
case $t in weights | checkpoint | h5_layout) fork="-fork=1 -ignore_crashes=1 -ignore_ooms=0" ;; esac
work=$b/corpus/$t crashes=$b/crashes log=$b/logs/$t.log
mkdir -p "$work" "$crashes" "$b/crashes-hdf5" "$b/logs"
dict=""
[ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:suppressions=$PWD/tests/fuzz/asan.supp
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ls "$crashes" | grep "^$t-" | sort >"$b/logs/$t.before"
start=$(date +%s)
# shellcheck disable=SC2086
"$b/fuzz_$t" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/$t-" $fork $dict "$work" \
    "tests/fuzz/corpus/$t" >"$log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))
ours=0 hdf5=0 flaky=0
for f in $(ls "$crashes" | grep "^$t-" | sort | comm -13 "$b/logs/$t.before" -); do
    # A malloc limit below the RSS limit makes an out-of-memory stop with the allocating stack.
    "$b/fuzz_$t" -timeout=10 -malloc_limit_mb=1024 -rss_limit_mb=4096 "$crashes/$f" \
        >"$b/logs/$f.txt" 2>&1
    replay=$?
    # The first frame that is neither the sanitizers, libFuzzer, an allocator nor libc.
    first=$(grep -E '^ +#[0-9]+ 0x' "$b/logs/$f.txt" |
        grep -v -E '__sanitizer|__asan|fuzzer::|__interceptor_|libc\.so|libstdc\+\+|/sysdeps/' |
        grep -v -E 'string/\.\./|linux-vdso| in (malloc|calloc|realloc|memcpy|memmove|strdup|strlen|__restore_rt) ' |
        head -n 1)
    if [ "$replay" = 0 ]; then
        # Gone on replay: it needed state an earlier input of the same job left (HDF5 keeps
        # global caches). Kept apart; it cannot be told ours or HDF5's.
        mkdir -p "$b/crashes-flaky"
        mv "$crashes/$f" "$b/crashes-flaky/$f"
        flaky=$((flaky + 1))
    elif echo "$first" | grep -q libhdf5; then
        mv "$crashes/$f" "$b/crashes-hdf5/$f"
        hdf5=$((hdf5 + 1))
    else
        ours=$((ours + 1))
    fi
done
# Normal mode ends with stat:: lines; fork mode with "#N: cov: ..." lines.
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
[ -n "$execs" ] || execs=$(echo "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
echo "fuzz $t: ${execs:-?} execs in ${elapsed}s, cov ${cov:-?}, ft ${ft:-?}," \
    "corpus $(ls "$work" | wc -l), new crashes $ours (+$hdf5 inside HDF5, +$flaky not" \
    "reproducible), exit $rc (log $log)"
[ "$ours" = 0 ] && { [ "$rc" = 0 ] || [ -n "$fork" ]; }
