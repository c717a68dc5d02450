"""`python -m raorch` is the `raorch` command."""

from raorch.cli.main import main

main()
