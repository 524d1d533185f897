"""The plugin system: hook specifications, the plugin manager, the typed registries, and the
tools that install and scaffold plugin packages."""
