"""Raw plates in and out: image readers, the HDF5 plate file, stitching, the synthetic generator.

Readers take TIFF, OME-TIFF and vendor files (bioio).

numpy, scipy, scikit-image, h5py and tifffile only: no torch.
"""
