"""Built-in architecture plugins, installed as ``bench.models`` and registered through entry points."""
