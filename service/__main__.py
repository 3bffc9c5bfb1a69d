"""``python -m service`` is the ``storyboard`` command."""

from service.cli import main

raise SystemExit(main())
