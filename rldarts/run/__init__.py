"""Layer 4, running an experiment: config checks, ``setup.build``, the run loop
(``experiment``), what process 0 writes (``recorder``, ``arch_record``, ``logger``),
checkpoints, the workdir lock and signals (``run_lifecycle``), one-line errors."""
