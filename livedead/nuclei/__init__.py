"""Nuclei: their size, labels from the stains, instances and counts, and matching against a truth.

numpy, scipy and scikit-image only: no torch.
"""
