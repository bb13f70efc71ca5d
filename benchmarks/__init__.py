"""LMRouter's overhead benchmark: router vs direct-to-upstream vs a bare aiohttp proxy (and
optionally nginx), measured in one run with wrk and k6. See benchmarks/README.md."""
