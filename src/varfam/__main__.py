"""``python -m varfam`` (and ``torchrun -m varfam``) run the command-line tool."""

from varfam.cli.main import main

raise SystemExit(main())
