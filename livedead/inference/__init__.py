"""Inference: a trained network on whole images, and the counting of its nuclei.

Needs torch, numpy and the image libraries, never Lightning, Hydra, torchmetrics, matplotlib or
the training data: a trained model deploys with its checkpoint alone.
"""
