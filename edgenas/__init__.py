"""edgenas: from a dataset and a list of edge devices to small, fast, trained networks."""

__version__ = "0.1.0"
