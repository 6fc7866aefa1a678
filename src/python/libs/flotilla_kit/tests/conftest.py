from flotilla_kit.testing.fixtures import postgres
