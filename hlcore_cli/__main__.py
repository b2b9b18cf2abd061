"""`python -m hlcore_cli`: the full `hlcore` command."""

from hlcore_cli import main

main()
