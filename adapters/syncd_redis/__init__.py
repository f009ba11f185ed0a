"""syncd redis adapter."""
