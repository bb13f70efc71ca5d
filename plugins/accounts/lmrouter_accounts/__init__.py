"""LMRouter accounts: users, API keys (``sk-lmr-…``, stored as hashes) and bring-your-own
provider keys (BYOK, stored encrypted).

- :mod:`lmrouter_accounts.service`: the async API every change goes through (CLI, dashboard);
- :mod:`lmrouter_accounts.auth`: key → Principal on the request path, cached in memory;
- :mod:`lmrouter_accounts.cli`: ``lmrouter users``, ``lmrouter keys``, ``lmrouter byok``.
"""

from lmrouter_accounts.plugin import AccountsPlugin

__all__ = ["AccountsPlugin"]
