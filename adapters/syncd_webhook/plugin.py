"""Plugin entry point for the webhook adapter (hooks added with the plugin system)."""
