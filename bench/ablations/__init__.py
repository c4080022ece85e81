"""Built-in ablations. Each is a registered plugin (entry-point group ``bench.ablations``)."""
