"""Content enrichers: lookups that add reference data to events."""
