"""LMRouter dashboard: server-rendered pages at ``/dashboard`` where users sign up, manage API
and provider keys, buy credits and watch their usage, and operators manage users."""

from lmrouter_dashboard.plugin import Dashboard

__all__ = ["Dashboard"]
