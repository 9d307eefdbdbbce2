"""``python -m harness``: the command line (:func:`harness.cli.main`)."""

from harness.cli import main

raise SystemExit(main())
