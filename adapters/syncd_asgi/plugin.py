"""Plugin entry point for the asgi adapter (hooks added with the plugin system)."""
