"""`python -m streams` is the `leadstream` command."""

from streams.cli import main

raise SystemExit(main())
