"""salad: fruit salads prepared in parallel over REST (Shared, Master, Workers)."""

__version__ = "0.1.0"
