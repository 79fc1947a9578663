#!/bin/bash
# Regenerates Resources/link-order/PROGRAM.txt: the functions each of berth-agent, berth-manager
# and berth runs in `make demo` (start, login, status, calls, logs, logout) and in a burst of
# logins and logouts by several users at once (berth-bench's footprint cycles), recorded by valgrind's
# callgrind. The release link (Package.swift) puts a program's functions side by side at the front
# of its code, so the pages a running process maps hold code it runs: the kernel maps 64 kB around
# every page a process touches, and with the used functions strewn over 24 MB of code an idle agent
# kept 13 MB of it resident. One list per program, since what the manager or `berth` runs placed
# among the agent's functions is code the agent maps and never runs. Run it again when much of the
# code has changed; symbols it names that no longer exist are skipped by the linker, and new ones
# are merely placed elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "link-order.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

make build
work=$(mktemp -d /tmp/berth-link-order.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/real"
# The demo runs each program through a stand-in that runs it under callgrind. valgrind cannot read
# the DWARF lld writes; the symbol table is all it needs.
for program in berth-agent berth-manager berth; do
  strip --strip-debug -o "$work/real/$program" ".build/release/$program"
  printf '#!/bin/sh\nexec valgrind --quiet --tool=callgrind --demangle=no --callgrind-out-file=%s/callgrind.%%p %s "$@"\n' \
    "$work" "$work/real/$program" > "$work/bin/$program"
  chmod +x "$work/bin/$program"
done
DEMO_BIN="$work/bin" scripts/demo.sh
# Then what the daemons run under load: users logging in and out side by side (the footprint
# bench's cycles), whose paths the one-user demo does not take (queued starts, contended locks,
# waits for exits). The bench starts the programs it finds next to itself.
cp .build/release/berth-bench "$work/bin/"
"$work/bin/berth-bench" --only footprint --cycles 24 --results "$work/bench"

# Each callgrind file (one per process) names each object (ob=) and function (fn=, cfn=) once with
# an id and refers to it by the id after; the functions listed under a program's own binary are
# that program's, in the order they first ran.
mkdir -p Resources/link-order
for program in berth-agent berth-manager berth; do
  for profile in "$work"/callgrind.*; do
    PROGRAM=$program perl -ne '
      if (/^(c?)ob=\((\d+)\)(?: (.*))?$/) {
        my ($callee, $id, $name) = ($1, $2, $3);
        $object{$id} = $name if defined $name;
        $current = $object{$id} unless $callee;
        next;
      }
      if (/^(c?)fn=\((\d+)\)(?: (.*))?$/) {
        my ($callee, $id, $name) = ($1, $2, $3);
        $function{$id} = $name if defined $name;
        next if $callee || $current !~ m{/real/\Q$ENV{PROGRAM}\E$};
        ($name = $function{$id}) =~ s/\x27\d+$//;
        print "$name\n" unless $seen{$name}++;
      }
    ' "$profile"
  done | awk '!seen[$0]++' > "$work/$program.txt"
  [ -s "$work/$program.txt" ] || { echo "link-order.sh: no functions of $program were recorded" >&2; exit 1; }
done
toolchain=$(swift --version 2>&1 | head -n 1)
for program in berth-agent berth-manager berth; do
  # lld skips '#' lines; the header says where the list came from, so a stale one is seen as such.
  { echo "# $program: the functions it runs, in order, for lld's --symbol-ordering-file."
    echo "# Written by scripts/link-order.sh on $(date -u +%Y-%m-%d) with $toolchain."
    echo "# Regenerate after moving or renaming much code (OperationsTests.linkOrderListsAreCurrent)."
    cat "$work/$program.txt"; } > "Resources/link-order/$program.txt"
  echo "==> Resources/link-order/$program.txt: $(wc -l < "Resources/link-order/$program.txt") functions"
done
# The build does not know the files are inputs of the link: the next `make` links afresh.
rm -f .build/release/berth-agent .build/release/berth-manager .build/release/berth
echo "==> \`make\` links them in front"
