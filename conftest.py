"""Settings for the whole suite (tests/ and every plugin's tests): this file is loaded first."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Hypothesis times each example (a 200 ms deadline) and how fast it makes data (the too_slow
# health check): on a busy machine both fail properties that hold. Speed is for benchmarks/.
settings.register_profile("lmrouter", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lmrouter")
