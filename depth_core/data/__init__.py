"""Datasets on disk: shards and manifests, importers of user folders, image IO, previews, and
the streaming datasets (with their augmentation) that training reads."""
