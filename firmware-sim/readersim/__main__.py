"""``python -m readersim`` is ``reader-sim``."""

from readersim.cli import main

raise SystemExit(main())
