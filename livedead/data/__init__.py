"""Data: raw plates in, the tile file out, batches for training. Never imports :mod:`livedead.model`."""
