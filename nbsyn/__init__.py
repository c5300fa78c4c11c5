"""nbsyn: the helper library behind the nbsyn notebooks.

Semantic image synthesis and limited-data GANs, rebuilt from the papers in plain PyTorch.
The notebooks in ``notebooks/`` are the product; this package holds what they share.
"""

__version__ = "0.1.0"
