"""syncd asgi adapter."""
