"""bench: the reference benchmark for identity-flow ablations in deep networks."""

__version__ = "0.2.1"
