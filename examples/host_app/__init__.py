"""A Starlette app gated by syncd's ASGI middleware (see README.md here)."""
