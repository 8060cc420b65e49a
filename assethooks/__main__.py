"""``python -m assethooks``: the CLI, as the ``assethooks`` command runs it."""

from assethooks.cli import main

main()
