"""Rows rendered as Schematic's response shapes (``schematic.types.*ResponseData``).

syncd is a single environment of a single account, so the required ``account_id`` and
``environment_id`` fields carry the constants below. Fields the SDK types require but
syncd has no data for are filled with their empty values (``[]``, ``""``).
"""
