"""snnexport: convert trained Keras CNNs into spiking networks and export runnable simulator scripts."""

__version__ = "0.1.0"
