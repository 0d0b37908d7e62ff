"""What the README tells a user to type works on the engine's defaults."""
import os
import re

from shmengine.config import Config
from shmengine.market import symbol_names

from conftest import ROOT


def test_readme_symbols_exist_in_the_default_market():
    text = open(os.path.join(ROOT, "README.md")).read()
    named = set(re.findall(r"shmengine snapshot \w+ ([A-Z]+)", text))
    named |= set(re.findall(r"eng\.snapshot\(\"([A-Z]+)\"\)", text))
    assert named, "the README names no symbol: this test looks for the wrong text"
    known = set(symbol_names(Config().symbols))
    assert named <= known, f"README names {sorted(named - known)}, not in the default market"
