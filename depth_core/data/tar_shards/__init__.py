"""Datasets kept as WebDataset tars of encoded images: the index a dataset directory holds in
place of `.npz` shards, and the one decode + resize every reader of those tars applies."""
