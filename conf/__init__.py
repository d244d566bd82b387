"""The Hydra configs, installed with the package as ``livedead.conf`` (the commands load them from there)."""
