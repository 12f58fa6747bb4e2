"""``python -m prunesched``: the ``prunesched`` command, for a checkout on ``PYTHONPATH`` that is not installed."""

from prunesched.cli import main

main()
