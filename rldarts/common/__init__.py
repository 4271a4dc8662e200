"""Layer 0: what every layer may use: atomic file writes (``files``)."""
