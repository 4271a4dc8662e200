"""rldarts: differentiable architecture search (DARTS) for reinforcement learning, in JAX.

Layers: ``ops`` (candidate operations, search spaces) -> ``genotypes`` (discrete cells as
plain data, discretization) -> ``cells`` (supernet and fixed cells) -> ``networks``
(torsos and heads) -> ``agents`` (PPO, DQN learners) driven by ``experiments/``.
"""

__version__ = "0.1.0"
