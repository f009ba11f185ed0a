"""Example applications using syncd."""
