"""Model families, one file each. Importing this package registers every model.

Every module in this folder is imported, so a new family file is registered (and
picked up by the registry-wide tests) the moment it is added.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
