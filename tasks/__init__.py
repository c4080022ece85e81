"""Built-in task plugins, installed as ``bench.tasks`` and registered through entry points."""
