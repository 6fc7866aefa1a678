from flotilla_kit.testing.fixtures import redis_server
