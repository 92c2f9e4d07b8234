"""The lineage's state on disk: what dvc.yaml declares, where outputs go, their fingerprints,
locks and records, and DVC's own bookkeeping."""
