"""Summarise a py-spy raw profile (`py-spy record -f raw`): the share of samples per thread, per function
including callees, and per leaf function, with idle waits (locks, selects, sleeps) left out, so the text shows
where a process spends its CPU. Used for the profiles in benchmarks/profiles/.

    py-spy record -p PID -d 20 -r 250 -f raw -o server.txt
    python benchmarks/pyspy_summary.py server.txt [--top 40]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# Frames where a thread waits rather than works (a blocking read shows as its Python caller's line); a sample
# whose leaf is one of these is idle time.
IDLE_LEAVES = re.compile(
    r"^(Condition\.wait|Event\.wait|_PollLikeSelector\.select|EpollSelector\.select|Queue\.get|"
    r"Runner\.run|BaseEventLoop\._run_once|exit_when_orphaned|SocketIO\.readinto|sleep|time\.sleep|"
    r"ModelServer\._copy_output)\b"
)


def frame_name(frame: str) -> str:
    """`function (path/to/site-packages/pkg/mod.py:123)` -> `function (pkg/mod.py)`."""
    frame = re.sub(r"\(/\S*?site-packages/", "(", frame)
    frame = re.sub(r"\(/\S*?/(localcloud|include|benchmarks)/", r"(\1/", frame)
    return re.sub(r":\d+\)$", ")", frame)


def summarize(lines: list[str], top: int) -> str:
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    busy = idle = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";") if frame]
        if not frames or IDLE_LEAVES.match(frames[-1]):
            idle += count
            continue
        busy += count
        leaves[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not busy:
        return "no busy samples"
    out = [f"samples: {busy} busy, {idle} idle (waiting); shares below are of busy samples", "", "-- inclusive"]
    out += [f"{count / busy:6.1%}  {name}" for name, count in inclusive.most_common(top)]
    out += ["", "-- leaf (self)"]
    out += [f"{count / busy:6.1%}  {name}" for name, count in leaves.most_common(top // 2)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    print(summarize(args.profile.read_text().splitlines(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
