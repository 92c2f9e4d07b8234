"""The Dagster app: assets, checks, resources and the report of what `dvc repro` ran."""
