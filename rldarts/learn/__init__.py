"""Layer 3, learning: the architecture step shared by every agent (``arch``), the
agents (PPO, DQN) and their registry (``agents``), acting (``actor``, ``async_actor``),
the replay and the device layout (``parallel``). Imports the layers below."""
