"""``python -m varfam`` (and ``torchrun -m varfam``) run the command-line tool."""

from .cli import main

raise SystemExit(main())
