"""``python -m nlptasks.cli`` (and ``torchrun -m nlptasks.cli``) is the ``nlptasks`` command."""

from nlptasks.cli import main

main()
