import re
from pathlib import Path

import flotilla_discovery


def test_the_version_comes_from_the_version_file():
    # The file the release tool bumps, next to the package (a literal here would break at every bump).
    version_file = (Path(flotilla_discovery.__file__).parent / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version_file)
    assert flotilla_discovery.__version__ == version_file
