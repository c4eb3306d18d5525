from __future__ import annotations

from receiver.cli import main

raise SystemExit(main())
