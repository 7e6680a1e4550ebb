"""The plugin interface lives in the core (runtime/core/hooks.py); re-exported here for plugins that
imported it from its old place."""

from runtime.core.hooks import Answer, AnswerStream, Hooks, Plugin

__all__ = ["Answer", "AnswerStream", "Hooks", "Plugin"]
