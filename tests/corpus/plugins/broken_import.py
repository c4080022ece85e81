"""A plugin that fails to import: its name and the error must be reported, nothing else breaks."""

raise RuntimeError("plugin is broken")
