"""Test session setup: a persistent XLA compilation cache shared with subprocesses.

The smoke runs compile the same programs several times (search, resume, train); the
cache turns every compile after the first into a disk read. It changes no numbers.
"""

import os
import tempfile

_CACHE = os.path.join(tempfile.gettempdir(), "rldarts_test_jax_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
