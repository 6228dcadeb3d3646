"""The one rule of gan-ablate's registries (tricks, losses): a class is added under its `name`, and a second class
under a taken name, a nameless class or one of the wrong type is refused, not swapped in (as torch-fidelity's
register_feature_extractor refuses one)."""
from __future__ import annotations


def add_to_registry(registry: dict, cls, base: type, kind: str, caller: str):
    """Add `cls` (a subclass of `base`) to `registry` under `cls.name`; `kind` names the entries in errors ("trick"),
    `caller` the registering function."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{caller}: {cls!r} is not a subclass of {base.__name__}")
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name`")
    if cls.name in registry:
        raise ValueError(f"{kind} {cls.name!r} is already registered (by {registry[cls.name].__qualname__})")
    registry[cls.name] = cls
    return cls
