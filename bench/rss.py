"""Resident memory of a process's children, read from /proc (Linux)."""
from __future__ import annotations

from pathlib import Path


def _ppid_and_rss(pid: int) -> tuple[int, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields.get("VmRSS", "0 kB").split()[0])
    return int(fields["PPid"].strip()), rss_kb


def rss_of_children(pid: int) -> list[float]:
    """RSS in MiB of every descendant of `pid` (gunicorn's workers, a qcluster's sentinel, pusher,
    monitor and workers), largest first."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _ppid_and_rss(int(entry.name))
            if found:
                table[int(entry.name)] = found
    wanted, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, rss_kb) in table.items():
            if ppid == parent:
                wanted.append(rss_kb / 1024)
                frontier.append(child)
    return sorted((round(r, 1) for r in wanted), reverse=True)
