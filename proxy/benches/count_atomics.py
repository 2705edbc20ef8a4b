#!/usr/bin/env python3
"""Atomic read-modify-write instructions a callgrind run of `ferry` executed, per request.

An atomic operation costs the proxy 50-100 cycles under load (it waits for the store buffer to
drain) but one instruction in callgrind's count, so changes that remove them are judged by this
count. Usage (see BENCHMARKS.md, "How measured"):

    cargo bench -p ferry-proxy --bench proxy -- --only proxy --ops read --modes max --idle 0 \\
        --requests 20000 --proxy-prefix 'valgrind --tool=callgrind --dump-instr=yes \\
        --dump-line=no --callgrind-out-file=/tmp/cg.%p.out'
    python3 proxy/benches/count_atomics.py /tmp/cg.<pid>.out target/release/ferry 22000 [TOP]

Counts every executed instruction of the binary that `objdump -d` shows with a `lock` prefix
or as an `xchg` with a memory operand; TOP names the functions with the most.
"""

import re
import subprocess
import sys


def atomic_addresses(binary):
    """Addresses of the binary's atomic read-modify-write instructions."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", binary],
        capture_output=True, text=True, check=True,
    ).stdout
    found = set()
    for line in listing.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
        if m and (m.group(2).startswith("lock ")
                  or (m.group(2).startswith("xchg") and "(" in m.group(2))):
            found.add(int(m.group(1), 16))
    return found


def symbols(binary):
    """Demangled function names (without the hash suffix) to their addresses."""
    listing = subprocess.run(
        ["nm", "-C", binary], capture_output=True, text=True, check=True
    ).stdout
    names = {}
    for line in listing.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in "tT":
            names[re.sub(r"::h[0-9a-f]{16}$", "", parts[2])] = int(parts[0], 16)
    return names


def instruction_counts(profile, binary):
    """Executed count per instruction address of `binary`, and the function of each address.

    Reads callgrind's format with instruction positions only: names may be compressed to
    `(id)` after their first appearance (in ob=/cob=, fn=/cfn= lines), addresses may be
    relative to the previous line, and the line after a `calls=` line is a call's inclusive
    cost, not an instruction's own.
    """
    objects, functions = {}, {}
    counts, function_of = {}, {}
    ob = fn = None
    last = 0
    call_cost = False
    spec = re.compile(r"(c?)(ob|fn)=\((\d+)\)(?: (.*))?")
    for line in open(profile):
        line = line.rstrip("\n")
        m = spec.match(line)
        if m:
            called, kind, ident, name = m.groups()
            table = objects if kind == "ob" else functions
            if name:
                table[ident] = name
            if not called:
                if kind == "ob":
                    ob = ident
                else:
                    fn = ident
            continue
        if line.startswith("calls="):
            call_cost = True
            continue
        if not line or line[0] not in "0123456789+-*":
            continue
        parts = line.split()
        position = parts[0]
        if position == "*":
            address = last
        elif position[0] in "+-":
            address = last + int(position, 0)
        else:
            address = int(position, 0)
        last = address
        if call_cost:
            call_cost = False
            continue
        if len(parts) > 1 and objects.get(ob, "").startswith(binary):
            counts[address] = counts.get(address, 0) + int(parts[1])
            function_of[address] = functions.get(fn)
    return counts, function_of


def main():
    profile, binary, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    atomic = atomic_addresses(binary)
    counts, function_of = instruction_counts(profile, binary)
    # Load offset (0 for a non-PIE binary): a profiled function's first address against its
    # symbol.
    names = symbols(binary)
    first = {}
    for address in sorted(counts):
        first.setdefault(function_of[address], address)
    offsets = [a - names[f] for f, a in first.items() if f in names]
    if not offsets:
        sys.exit("no function of the profile found among the binary's symbols")
    offset = max(set(offsets), key=offsets.count)
    hits = {a: c for a, c in counts.items() if a - offset in atomic}
    total = sum(hits.values())
    print(f"{total} atomic read-modify-writes, {total / requests:.1f} per request")
    per_function = {}
    for address, count in hits.items():
        name = function_of[address]
        per_function[name] = per_function.get(name, 0) + count
    for name, count in sorted(per_function.items(), key=lambda x: -x[1])[:top]:
        print(f"{count / requests:7.2f}  {name}")


if __name__ == "__main__":
    main()
