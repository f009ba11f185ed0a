"""The HTTP API served by `syncd run`."""

from .app import create_app

__all__ = ["create_app"]
