"""flotilla_contracts: the msgspec schemas of every event and cross-service API.

These types are the public contract between services: change them only compatibly (new fields
get defaults; never reuse a removed field's name), or bump the major version.
"""

from importlib import resources

__version__ = (resources.files(__name__) / "VERSION").read_text().strip()
