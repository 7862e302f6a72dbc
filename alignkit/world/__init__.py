"""The built-in default world: a deterministic assistant world and its tiny model.

Importing this package registers `builtin:world-tiny` with `alignkit.models.loading`.
"""
from alignkit.models.loading import register_builtin
from alignkit.world.tiny import world_tiny_factory

register_builtin("world-tiny", world_tiny_factory, overwrite=True)
