#!/usr/bin/env bash
# Instructions per chain of the ring rows: NativeAOT build of bench/VirtioPanic.RingInstructions,
# each row run under valgrind (callgrind, instruction counts only) for two run lengths; the
# difference in instructions divided by the difference in chains cancels start-up and set-up.
# Manual, not part of CI. Needs valgrind (Debian: apt-get install valgrind).
# Usage: bench/ring-instructions.sh [ROW_SUBSTRING...]   (no argument: every row)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/VirtioPanic.RingInstructions/bin/aot"
short="${RING_ROUNDS_SHORT:-200}"
long="${RING_ROUNDS_LONG:-1200}"

dotnet publish "$here/VirtioPanic.RingInstructions" -c Release -r linux-x64 -o "$out" -p:StripSymbols=false -nologo -v quiet >/dev/null
# valgrind's debuginfo reader rejects NativeAOT's DWARF ("possibly corrupted debuginfo file"):
# keep the symbol table (callgrind_annotate then names the methods) and drop the debug sections.
strip --strip-debug -o "$out/ring-instructions" "$out/VirtioPanic.RingInstructions"
exe="$out/ring-instructions"

count() {   # row rounds -> total instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$1" "$2" 2>&1 >/dev/null \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-50s %12s\n' row instr/chain
"$exe" | while read -r row chains; do
    if [ $# -gt 0 ]; then
        keep=0
        for pattern in "$@"; do [[ "$row" == *"$pattern"* ]] && keep=1; done
        [ $keep -eq 1 ] || continue
    fi
    a=$(count "$row" "$short")
    b=$(count "$row" "$long")
    awk -v r="$row" -v a="$a" -v b="$b" -v n=$(( (long - short) * chains )) \
        'BEGIN { printf "%-50s %12.1f\n", r, (b - a) / n }'
done
