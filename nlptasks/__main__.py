"""``python -m nlptasks`` is the ``nlptasks`` command."""

from nlptasks.cli import main

main()
