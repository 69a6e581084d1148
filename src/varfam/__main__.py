"""``python -m varfam`` (and ``torchrun -m varfam``) run the command-line tool."""

from varfam.cli import main

raise SystemExit(main())
