"""flotilla_streams: reliable messaging over Redis Streams.

Publish directly or through a transactional outbox, consume in groups with an inbox that makes
effects exactly-once, retry with backoff, reclaim from dead consumers, dead-letter poison entries.
"""

from flotilla_kit.info import read_version

__version__ = read_version(__name__)
