"""flotilla_kit: the runtime every flotilla service is built on."""

from flotilla_kit.info import read_version

__version__ = read_version(__name__)
