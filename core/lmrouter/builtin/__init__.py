"""Plugins that ship inside the core, registered through the same hooks as everyone else's."""
