"""Layer 5, reporting: reads finished run workdirs and writes ``report.md`` with its
figures (``writer`` and its sections), the statistics (``analysis``) and the no-RL
op-recovery check. Imports every layer below; nothing imports it."""
