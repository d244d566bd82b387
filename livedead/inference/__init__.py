"""Inference: a trained network on whole images and plates, and the evaluation of its counts.

Needs torch, numpy and the image libraries (scipy, scikit-image, h5py, tifffile, PIL), never
Lightning, Hydra, torchmetrics or matplotlib: a trained model deploys with its checkpoint alone.
"""
