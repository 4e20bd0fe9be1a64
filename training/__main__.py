"""`python -m training train|export`: train N_r (issue 9) and export its weights."""

from training.cli import main

raise SystemExit(main())
