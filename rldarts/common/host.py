"""Facts of the host machine that several layers ask for."""

from __future__ import annotations

import os


def available_ram_bytes() -> int:
    """RAM the kernel can give without swapping (``MemAvailable``), else free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
