#!/usr/bin/env bash
# Coverage-guided fuzzing: builds fuzz/VirtioPanic.Fuzz, instruments the src assemblies with
# SharpFuzz, builds the libFuzzer driver (fuzz/driver) and runs each target for a fixed time.
#
#   fuzz/run.sh [--seconds N] [--max-len N] [--timeout N] [--no-build] [--keep-going] [--ci] [TARGET...]
#
#   --seconds N   time per target (default 60)
#   --max-len N   largest input libFuzzer generates (default 8192)
#   --timeout N   an input running longer than N seconds is a finding (default 10)
#   --no-build    reuse fuzz/artifacts from the previous run
#   --keep-going  libFuzzer's fork mode with -ignore_crashes=1: a crash is recorded and fuzzing
#                 goes on in a fresh process (campaigns on a target with a known finding)
#   --ci          skip targets with an open finding (fuzz/findings/TARGET/OPEN), saying so
#   TARGET...     default: every target (VirtioPanic.Fuzz list)
#
# Seeds come from fuzz/corpus/TARGET and recorded findings from fuzz/findings/TARGET (both read
# only: a fixed finding is replayed first, as a regression input); what libFuzzer adds goes to
# fuzz/artifacts/corpus/TARGET, which later runs start from. A crash, an escaped exception, a
# timeout or running out of memory leaves its input in fuzz/artifacts/findings/TARGET/ and makes
# the script exit 1 after the remaining targets ran. One line per target and a total go to
# stdout; each target's whole log is fuzz/artifacts/logs/TARGET.log; every run appends
# "date target seconds executions result" to fuzz/artifacts/runs.tsv.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=60
max_len=8192
timeout=10
build=1
keep_going=0
ci=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --max-len) max_len=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep-going) keep_going=1; shift ;;
        --ci) ci=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        -*) echo "fuzz/run.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
artifacts=$root/fuzz/artifacts
bin=$artifacts/instrumented
driver=$artifacts/dotnet-fuzz-driver
mkdir -p "$artifacts/logs"

if [ "$build" -eq 1 ]; then
    # clang-14 and libFuzzer from Debian's packages (idempotent; instant when present).
    "$root/.ci/prerequisites" --fuzz || exit 1

    dotnet tool restore >/dev/null || { echo "fuzz: dotnet tool restore failed" >&2; exit 1; }
    rm -rf "$artifacts/build" "$bin"
    if ! dotnet build "$root/fuzz/VirtioPanic.Fuzz/VirtioPanic.Fuzz.csproj" -c Release -o "$artifacts/build" > "$artifacts/logs/build.log" 2>&1; then
        tail -30 "$artifacts/logs/build.log"
        echo "fuzz: build failed" >&2
        exit 1
    fi

    # Instrument copies of the assemblies under test (never the harness, never the BCL): each
    # branch then bumps SharpFuzz's edge counter in the map the driver shares with libFuzzer.
    cp -r "$artifacts/build" "$bin"
    for assembly in VirtioPanic.Virtio VirtioPanic.Transport VirtioPanic.Device VirtioPanic.VhostUser; do
        if ! dotnet sharpfuzz "$bin/$assembly.dll" > "$artifacts/logs/instrument-$assembly.log" 2>&1; then
            cat "$artifacts/logs/instrument-$assembly.log"
            echo "fuzz: instrumenting $assembly failed" >&2
            exit 1
        fi
    done

    if ! clang-14 -O2 -g -Wall -Wextra -Werror -fsanitize=fuzzer "$root/fuzz/driver/dotnet-fuzz-driver.c" -o "$driver"; then
        echo "fuzz: building the driver failed" >&2
        exit 1
    fi
fi

if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(dotnet "$bin/VirtioPanic.Fuzz.dll" list)
fi

dotnet_path=$(command -v dotnet)
failed=0
total=0
skipped=0
summary=()
for target in "${targets[@]}"; do
    if [ ! -d "$root/fuzz/corpus/$target" ]; then
        echo "fuzz: no target $target (no fuzz/corpus/$target)" >&2
        failed=1
        continue
    fi

    recorded=$root/fuzz/findings/$target
    if [ "$ci" -eq 1 ] && [ -f "$recorded/OPEN" ]; then
        line=$(printf '%-18s %10s %s' "$target" "-" "skipped: open finding, $(head -n1 "$recorded/OPEN")")
        summary+=("$line")
        echo "$line"
        skipped=$((skipped + 1))
        continue
    fi

    work=$artifacts/corpus/$target
    findings=$artifacts/findings/$target
    log=$artifacts/logs/$target.log
    mkdir -p "$work" "$findings"
    corpora=("$work" "$root/fuzz/corpus/$target")
    if [ -d "$recorded" ]; then
        corpora+=("$recorded")
    fi
    mode=()
    if [ "$keep_going" -eq 1 ]; then
        mode=(-fork=1 -ignore_crashes=1)
    fi
    before=$(find "$findings" -type f | wc -l)
    # libFuzzer writes new inputs to the first corpus directory only: seeds and findings stay as they are.
    "$driver" "${mode[@]}" -max_total_time="$seconds" -timeout="$timeout" -max_len="$max_len" -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$findings/" \
        --target_path="$dotnet_path" --target_arg="$bin/VirtioPanic.Fuzz.dll" --target_arg="$target" \
        "${corpora[@]}" > "$log" 2>&1
    status=$?

    # Executions: libFuzzer's final statistics, or in fork mode its last progress line ("#N: cov: ...").
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ -z "$runs" ]; then
        runs=$(sed -n 's/^#\([0-9][0-9]*\)[: ].*/\1/p' "$log" | tail -1)
    fi
    runs=${runs:-0}
    total=$((total + runs))
    new=$(( $(find "$findings" -type f | wc -l) - before ))
    if [ "$keep_going" -eq 1 ] && [ "$new" -gt 0 ]; then
        result="FINDINGS: $new new inputs in fuzz/artifacts/findings/$target"
    elif [ "$status" -eq 0 ]; then
        result=ok
    elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then
        result=TIMEOUT
    elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then
        result=OUT-OF-MEMORY
    elif grep -q 'an exception escaped' "$log"; then
        result=EXCEPTION
    else
        result=CRASH
    fi

    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "$seconds" "$runs" "$result" >> "$artifacts/runs.tsv"
    line=$(printf '%-18s %10s executions in %ss  %s' "$target" "$runs" "$seconds" "$result")
    summary+=("$line")
    echo "$line"
    if [ "$result" != ok ]; then
        failed=1
        if [ "$keep_going" -eq 1 ]; then
            continue
        fi
        # The escaped exception (SharpFuzz prints it) or libFuzzer's report, and the input.
        grep -m1 -B2 -A25 -E 'Unhandled|Exception|ERROR: libFuzzer' "$log" | head -40
        ls -1 "$findings" | sed 's/^/  finding: /'
    fi
done

echo "fuzz: $((${#targets[@]} - skipped)) targets run, $skipped skipped, $total executions"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED (inputs in fuzz/artifacts/findings/; reproduce with dotnet fuzz/artifacts/instrumented/VirtioPanic.Fuzz.dll TARGET FILE)"
    exit 1
fi
