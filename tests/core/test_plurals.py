"""No hedged plural ("deployment(s)") in what the console writes for people: pages, emails, command output,
health problems, analytics captions. Counts go through billing_console.wording.counted."""
import re
from pathlib import Path

from billing_console.wording import counted

ROOT = Path(__file__).resolve().parents[2]
HEDGED = re.compile(r"[a-z]\(s\)")
CODE = {"int(s)", "http(s)"}  # code and URL schemes, not words


def test_counted_writes_the_right_plural():
    assert [counted(1, "deployment"), counted(0, "deployment"), counted(2, "entry", "entries"),
            counted(1200, "event")] == ["1 deployment", "0 deployments", "2 entries", "1,200 events"]


def test_no_hedged_plurals_in_the_console():
    hedged = []
    for folder in ("billing_console", "deployments", "dunning", "licensing", "templates"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".html", ".txt") or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                words = [m.group(0) for m in re.finditer(r"\w*\(s\)", line) if m.group(0) not in CODE]
                if words and HEDGED.search(line):
                    hedged.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert hedged == []
