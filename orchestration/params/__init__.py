"""The params schema (params.yaml) and the profiles that write it."""
