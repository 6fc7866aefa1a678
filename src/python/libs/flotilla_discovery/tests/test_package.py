import flotilla_discovery


def test_the_version_comes_from_the_version_file():
    assert flotilla_discovery.__version__ == "0.2.0"
