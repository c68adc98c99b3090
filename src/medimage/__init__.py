"""medimage: an event-driven pipeline that learns to classify medical images and labels new ones."""

__version__ = "0.1.0"
