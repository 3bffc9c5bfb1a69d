"""Where the browser tests find their browser: Debian's ``chromium`` and its chromedriver."""

from __future__ import annotations

import shutil
from pathlib import Path

INSTALL_HINT = "no Chromium; to run them: apt-get install chromium chromium-driver"
DRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find_chromium() -> tuple[str, str] | None:
    """The Chromium binary and its chromedriver, or ``None`` unless both are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next(
        (path for path in DRIVER_PATHS if Path(path).exists()), None
    )
    return (browser, driver) if browser and driver else None
