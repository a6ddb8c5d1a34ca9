#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    # The one place outside settings that touches the environment: Django needs to know which settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_console.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
