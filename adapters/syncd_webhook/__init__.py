"""syncd webhook adapter."""
