"""Layer 2, environments: vectorised env families stepped on the host (``envs``), the
training wrapper with episode statistics and reward normalisation (``training_env``) and
the Procgen score constants. Imports ``common`` and ``model`` only (it needs neither)."""
