"""Test session setup: a persistent XLA compilation cache shared with subprocesses.

The smoke runs compile the same programs several times (search, resume, train); the
cache turns every compile after the first into a disk read. It changes no numbers.
The binaries' own cache (rldarts/run/compile_cache.py) is pointed at the same temporary
directory, so no test writes into the user's ~/.cache (subprocesses inherit the
environment; tests/test_compile_cache.py sets its own).
"""

import os
import tempfile

_CACHE = os.path.join(tempfile.gettempdir(), "rldarts_test_jax_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("RLDARTS_COMPILATION_CACHE", os.environ["JAX_COMPILATION_CACHE_DIR"])
