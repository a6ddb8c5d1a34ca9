"""docs/runbook.md names only commands that exist, with flags their parsers accept."""
import re
import shlex
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class

RUNBOOK = Path(settings.BASE_DIR) / "docs" / "runbook.md"
INLINE = re.compile(r"`(python manage\.py [^`]+)`")


def runbook_commands() -> list[str]:
    text = RUNBOOK.read_text()
    found, in_block = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        if in_block and line.strip().startswith("python manage.py "):
            found.append(line.split(" #", 1)[0].strip())
        elif not in_block:
            found += INLINE.findall(line)
    return found


def test_the_runbook_names_commands():
    commands = {shlex.split(c)[2] for c in runbook_commands()}
    assert {"export_backup", "restore_backup", "rebuild_from_stripe", "catch_up_events", "notify_token_rotation",
            "rotate_master_key", "replay_events", "preflight"} <= commands


@pytest.mark.parametrize("line", runbook_commands())
def test_every_runbook_command_exists_and_its_flags_parse(line):
    words = shlex.split(line)
    name, args = words[2], words[3:]
    available = get_commands()
    assert name in available, f"{name} is not a manage.py command"
    command = load_command_class(available[name], name)
    parser = command.create_parser("manage.py", name)
    parser.parse_args(args)  # raises CommandError on an unknown flag or a bad value
