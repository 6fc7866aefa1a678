from flotilla_kit.testing.fixtures import database_url, postgres
