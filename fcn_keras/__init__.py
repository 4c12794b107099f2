"""fcn-keras: Fully Convolutional Networks for semantic segmentation in Keras 3."""

__version__ = "0.1.0"
