"""Built-in recipes (YAML), one folder per task.

Installed as the package ``nlptasks.builtin_recipes`` so the files can be found with
``importlib.resources`` in a wheel and in an editable install alike; never a top-level package.
"""
