"""fcn-keras: Fully Convolutional Networks for semantic segmentation in Keras 3."""

__version__ = "0.1.0"


def __getattr__(name):
    """`fcn_keras.Segmenter` (the Python API) without importing TensorFlow for the CLI's --help."""
    if name == "Segmenter":
        from fcn_keras.api import Segmenter
        return Segmenter
    raise AttributeError(f"module 'fcn_keras' has no attribute {name!r}")
