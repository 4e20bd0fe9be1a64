"""`python -m training train|export|ablate|judge`: train N_r (issue 9), export, ablate and judge
its weights."""

from training.cli import main

raise SystemExit(main())
