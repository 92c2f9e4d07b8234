"""The lineage stages, one module each; `registry` names them and runs one under its lock."""
