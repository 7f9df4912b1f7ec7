#!/usr/bin/env python3
"""Self cost (instructions) per function in a callgrind output file, heaviest first, per request.

    callgrind_top.py CALLGRIND_FILE REQUESTS [N]

Reads the raw format (run valgrind with --compress-strings=no); standard library only. `bench/run.sh cpu`
writes bench/profile-*.txt with it.
"""
import collections
import sys


def main():
    path, requests = sys.argv[1], max(int(sys.argv[2]), 1)
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    cost = collections.Counter()
    fn, after_call = None, False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("fn="):
            fn = line[3:]
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the callee's inclusive cost
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            if after_call:
                after_call = False
                continue
            parts = line.split()
            if len(parts) >= 2 and fn:
                cost[fn] += int(parts[1])
    total = sum(cost.values())
    print(f"{total / requests:,.0f} instructions per request ({total:,} over {requests} requests), self cost by function:")
    for name, c in cost.most_common(top):
        print(f"{c / requests:>10,.0f}  {100 * c / total:5.1f}%  {name[:160]}")


if __name__ == "__main__":
    main()
