"""Plugin entry point for the redis adapter (hooks added with the plugin system)."""
