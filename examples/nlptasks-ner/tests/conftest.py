"""The plugin's tests use the kit nlptasks ships for plugin authors; never the network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["nlptasks.testing"]
