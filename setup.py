"""rldarts: differentiable architecture search (DARTS) for reinforcement learning, in JAX."""

from setuptools import find_packages, setup

setup(
    name="rldarts",
    version="0.1.0",
    description="RL-DARTS: differentiable architecture search for pixel RL agents (JAX/Flax).",
    python_requires=">=3.11",
    packages=find_packages(include=["rldarts", "rldarts.*", "experiments", "experiments.*"]),
    package_data={"rldarts": ["data/*.csv"]},
    install_requires=[
        "numpy>=2",
        "jax>=0.4.30",
        "flax>=0.10",
        "optax>=0.2",
        "chex>=0.1.87",
        "rlax>=0.1.6",
        "absl-py>=2",
        "ml-collections>=0.1.1",
        "orbax-checkpoint>=0.6",
        "envpool>=1.0",
        "gymnax>=1.0.1",  # MinAtar as JAX envs (rldarts.env.minatar); pins gymnasium<1.4
        # DM-Control from pixels (rldarts.env.dmc); mujoco 4.0.0 breaks dm_control 1.0.50
        # ('MjModel' object has no attribute 'flex_vertedge'). Rendering needs EGL (make setup).
        "dm-control==1.0.50",
        "mujoco==3.17.0",
        "PyQt5-Qt5>=5.15",  # the Qt5 Core/Gui runtime of envpool.procgen (see rldarts.env.envs)
        "matplotlib>=3.8",
        "pillow>=10",
        "tensorboardX>=2.6",
        "ray>=2.10",  # launch/sweep.py's Ray engine
    ],
    # dev: the test suite (tests/test_notebook.py runs the notebook through nbclient on an
    # ipykernel) and `make lint` (ruff). `make setup` installs the exact versions of
    # requirements.lock; these ranges are for library users.
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            "ruff>=0.6",
        ]
    },
)
