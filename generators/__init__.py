"""Event generators, one per flow: `generators/<flow>.py` defines `Generator`."""
