"""bench.diff.config_diff: one line per differing leaf, the same for every caller."""

from bench.diff import config_diff

A = {"train": {"lr": 0.01, "epochs": 4}, "ablations": [{"name": "x", "k": 1}, {"name": "y"}], "seeds": [0],
     "out": None}
B = {"train": {"lr": 0.02, "epochs": 4}, "ablations": [{"name": "y"}, {"name": "x", "k": 2}], "device": "cpu"}


def test_nested_keys_named_entries_and_one_sided_keys():
    assert config_diff(A, B) == ["ablations.x.k: 1 -> 2", "device: only in B = 'cpu'", "out: only in A = None",
                                 "seeds: only in A = [0]", "train.lr: 0.01 -> 0.02"]
    assert config_diff(A, B, sides=("old", "new"))[1] == "device: only in new = 'cpu'"
    assert config_diff(A, A) == [] and config_diff({}, {}) == []


def test_limit_keeps_the_first_entries():
    assert config_diff(A, B, limit=2) == ["ablations.x.k: 1 -> 2", "device: only in B = 'cpu'"]
    assert config_diff(A, B, limit=0) == []
    assert config_diff(A, B, limit=99) == config_diff(A, B)


def test_missing_as_none_and_lists_as_values():
    """sides=None, by_name=False: a missing key reads as None, lists compare whole (a run folder's check)."""
    assert config_diff(A, B, sides=None, by_name=False) == [
        "ablations: [{'name': 'x', 'k': 1}, {'name': 'y'}] -> [{'name': 'y'}, {'name': 'x', 'k': 2}]",
        "device: None -> 'cpu'", "seeds: [0] -> None", "train.lr: 0.01 -> 0.02"]  # out: None either way


def test_a_dict_against_a_value_is_one_leaf():
    assert config_diff({"a": {"b": 1}}, {"a": 3}) == ["a: {'b': 1} -> 3"]
    assert config_diff({"a": 1, 2: "x"}, {"a": 1, 2: "y"}) == ["2: 'x' -> 'y'"]
