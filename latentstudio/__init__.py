"""LatentStudio: a face editor built on a StyleGAN-family generator (MobileStyleGAN, W+ space)."""

__version__ = "0.1.0"
