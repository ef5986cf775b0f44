"""Encoders, the contrastive model and loss (the library), training and evaluation (the harness).

Import from the submodules (``models.model``, ``models.train``...): this package file stays empty
so that importing one piece never pulls in torch for a caller that only wants the CLI."""
