"""Inference: a trained network on whole images and plates, and the evaluation of its counts.

Needs torch, numpy and the image libraries (scipy, scikit-image, h5py, tifffile, PIL), never
Lightning, Hydra, torchmetrics or matplotlib: a trained model deploys with its checkpoint alone,
which records the held-out wells too. Inference reads no training data, with two exceptions:
``wells=held_out`` on a checkpoint older than that record reads its training tile file's
attributes, and ``livedead.export`` without a ``sample`` renders its test image with the
synthetic plate generator (:mod:`livedead.plates.synthetic`, numpy and scipy only).
"""
