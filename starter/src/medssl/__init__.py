"""medssl: the support library of the medmnist-ssl course."""
__version__ = "0.1.0"
