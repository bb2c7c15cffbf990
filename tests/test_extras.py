"""Optional features: a missing extra is named with the pip command that brings it, and `all` holds every extra."""

import tomllib

import pytest

from asrforge.errors import AsrforgeError
from asrforge.extras import require_extra
from conftest import REPO


def test_a_missing_extra_names_the_pip_command_that_brings_it():
    require_extra("serve", "asrforge serve", "json", "numpy")            # present: nothing happens
    with pytest.raises(AsrforgeError, match=r"asrforge serve needs not_a_module_xyz, which this installation lacks; "
                                            r"install them with pip install 'asrforge\[serve\]'"):
        require_extra("serve", "asrforge serve", "json", "not_a_module_xyz")


def test_all_lists_every_optional_feature():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    features = {name for name in extras if name not in ("all", "test")}
    assert set(extras["all"]) == {f"asrforge[{name}]" for name in features}
