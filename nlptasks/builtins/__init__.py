"""Built-in plugins. Installed as ``nlptasks.builtins``, never as a top-level ``plugins``."""
