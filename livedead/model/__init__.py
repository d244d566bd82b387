"""The model: U-Net, Lightning module, metrics, schedulers and self-describing checkpoints.

``unet`` and ``checkpoint`` need torch alone, so that inference can use them without Lightning.
"""
