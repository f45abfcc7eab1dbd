"""certbot_wwu.state: CONFIG/wwu-acl/NAME.json."""
import json
import os
import stat

import pytest

from certbot_wwu.lineage import Lineage
from certbot_wwu.state import State

PRINCIPALS = [["user", "svc", 1001], ["group", "readers", 2002]]


@pytest.fixture
def lineage(tmp_path):
    return Lineage(str(tmp_path), "unit")


def state_path(lineage):
    return os.path.join(lineage.config_dir, "wwu-acl", "unit.json")


def write(lineage, text):
    path = state_path(lineage)
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write(text)


def assert_empty(state, lineage):
    """What a missing or damaged file loads as: nothing known."""
    assert not state.known
    assert (state.granted, state.principals, state.acted_version) == ([], [], None)
    assert state.path == state_path(lineage)


def test_no_file_is_an_empty_state(lineage):
    state = State.load(lineage)
    assert_empty(state, lineage)
    assert not os.path.exists(os.path.dirname(state.path))


def test_save_load_round_trip(lineage):
    state = State.load(lineage)
    assert not state.known
    state.granted = [3]
    state.principals = [list(p) for p in PRINCIPALS]
    state.acted_version = 2
    state.save()
    assert state.known
    again = State.load(lineage)
    assert again.path == state.path
    assert again.known
    assert again.granted == [3]
    assert again.principals == PRINCIPALS
    assert again.acted_version == 2
    with open(state.path) as f:
        assert json.load(f) == {"granted": [3], "principals": PRINCIPALS,
                                "acted_version": 2}


def test_several_granted_versions_round_trip(lineage):
    # what a deployment records before granting: old and new version
    State(state_path(lineage), [2, 3], PRINCIPALS).save()
    again = State.load(lineage)
    assert again.known
    assert (again.granted, again.principals, again.acted_version) == \
        ([2, 3], PRINCIPALS, None)


def test_granted_versions_load_sorted_without_duplicates(lineage):
    write(lineage, json.dumps({"granted": [3, 2, 3], "principals": PRINCIPALS}))
    state = State.load(lineage)
    assert state.known
    assert state.granted == [2, 3]


def test_empty_lists_are_a_known_state(lineage):
    write(lineage, json.dumps({"granted": [], "principals": [],
                               "acted_version": None}))
    state = State.load(lineage)
    assert state.known
    assert (state.granted, state.principals, state.acted_version) == ([], [], None)


def test_save_overwrites(lineage):
    State(state_path(lineage), [1], PRINCIPALS, 1).save()
    State(state_path(lineage), [2], PRINCIPALS[:1]).save()
    again = State.load(lineage)
    assert again.known
    assert (again.granted, again.principals, again.acted_version) == \
        ([2], PRINCIPALS[:1], None)
    assert os.listdir(os.path.dirname(state_path(lineage))) == ["unit.json"]


def test_modes(lineage):
    old = os.umask(0)
    try:
        State(state_path(lineage), [1], PRINCIPALS).save()
    finally:
        os.umask(old)
    path = state_path(lineage)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    # a second save keeps the file 0600
    State(path, [2], PRINCIPALS).save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_states_of_two_lineages_are_separate(tmp_path):
    a, b = Lineage(str(tmp_path), "a"), Lineage(str(tmp_path), "b")
    sa = State.load(a)
    sa.granted = [5]
    sa.save()
    assert State.load(a).known
    assert State.load(a).granted == [5]
    assert not State.load(b).known
    assert State.load(b).granted == []


@pytest.mark.parametrize("text", [
    "",
    "{",
    "not json",
    "\x00\x01",
    "[]",
    "[1, 2]",
    "\"text\"",
    "42",
    "null",
])
def test_damaged_file_is_an_empty_state(lineage, text):
    write(lineage, text)
    assert_empty(State.load(lineage), lineage)


def test_undecodable_file_is_an_empty_state(lineage):
    write(lineage, "")
    with open(state_path(lineage), "wb") as f:
        f.write(b'{"granted": [2], "principals": [], "x": "\xff\xfe"}')
    assert_empty(State.load(lineage), lineage)


def test_state_path_is_a_directory(lineage):
    os.makedirs(state_path(lineage))
    assert_empty(State.load(lineage), lineage)


@pytest.mark.parametrize("data", [
    # the old format (one "version") is not understood: sweep everything
    {"version": 2, "principals": PRINCIPALS, "acted_version": 1},
    # missing keys
    {"principals": PRINCIPALS},
    {"granted": [2]},
    {"acted_version": 4},
    {},
    # wrong types of the lists
    {"granted": 2, "principals": PRINCIPALS},
    {"granted": "2", "principals": PRINCIPALS},
    {"granted": None, "principals": PRINCIPALS},
    {"granted": {"2": 2}, "principals": PRINCIPALS},
    {"granted": [2], "principals": "user"},
    {"granted": [2], "principals": 5},
    {"granted": [2], "principals": {"user": "svc"}},
    # a wrong version anywhere in the list
    {"granted": ["2"], "principals": PRINCIPALS},
    {"granted": [2, "3"], "principals": PRINCIPALS},
    {"granted": [2.0], "principals": PRINCIPALS},
    {"granted": [None], "principals": PRINCIPALS},
    {"granted": [0], "principals": PRINCIPALS},
    {"granted": [-1], "principals": PRINCIPALS},
    {"granted": [True], "principals": PRINCIPALS},
    {"granted": [2, False], "principals": PRINCIPALS},
    {"granted": [[2]], "principals": PRINCIPALS},
    # a wrong principal anywhere in the list
    {"granted": [2], "principals": [["user", "svc"]]},
    {"granted": [2], "principals": [["user", "svc", 1001, 1]]},
    {"granted": [2], "principals": [["other", "x", 1]]},
    {"granted": [2], "principals": [["user", "svc", "1001"]]},
    {"granted": [2], "principals": [["user", "svc", 1001.0]]},
    {"granted": [2], "principals": [["user", "svc", True]]},
    {"granted": [2], "principals": [["user", "svc", -1]]},
    {"granted": [2], "principals": [["user", 5, 1001]]},
    {"granted": [2], "principals": [["user", None, 1001]]},
    {"granted": [2], "principals": ["user"]},
    {"granted": [2], "principals": [5]},
    {"granted": [2], "principals": [None]},
    {"granted": [2], "principals": [("user", "svc", 1001), "user"]},
    {"granted": [2], "principals": PRINCIPALS + [["group", "readers"]]},
])
def test_wrong_types_are_an_empty_state(lineage, data):
    # one damaged value is enough: the rest cannot be trusted either
    write(lineage, json.dumps(data))
    assert_empty(State.load(lineage), lineage)


@pytest.mark.parametrize("acted", ["2", 1.5, True, 0, -3, [2], {"v": 2}])
def test_acted_version_of_the_wrong_type_is_dropped(lineage, acted):
    # only the unit action is repeated; the grants are still known
    write(lineage, json.dumps({"granted": [2], "principals": PRINCIPALS,
                               "acted_version": acted}))
    state = State.load(lineage)
    assert state.known
    assert (state.granted, state.principals, state.acted_version) == \
        ([2], PRINCIPALS, None)


def test_missing_acted_version_is_none(lineage):
    write(lineage, json.dumps({"granted": [2], "principals": PRINCIPALS}))
    state = State.load(lineage)
    assert state.known
    assert (state.granted, state.principals, state.acted_version) == \
        ([2], PRINCIPALS, None)


@pytest.mark.parametrize("principals", [None, 5])
def test_principals_of_the_wrong_type_are_an_empty_state(lineage, principals):
    write(lineage, json.dumps({"granted": [2], "principals": principals}))
    state = State.load(lineage)
    assert_empty(state, lineage)
