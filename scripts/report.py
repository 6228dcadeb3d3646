#!/usr/bin/env python
"""The report from a checkout: the same as the installed `gan-ablate-report` (gan_ablate/report_cli.py).

    python scripts/report.py multirun/2026-11-23/10-00-00
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_ablate.report_cli import main  # noqa: E402

if __name__ == "__main__":
    main()
