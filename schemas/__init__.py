"""Event schemas (JSON files, one per type and version) and the upcasters between versions."""
