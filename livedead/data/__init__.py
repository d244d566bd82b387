"""Tiles: tiling, the tile file, preparation from a plate, and batches for training.

Never imports :mod:`livedead.model`.
"""
