import pytest

from keras_llm import config as config_lib
from keras_llm.sweep.trials import grid_values, make_trials, range_values

LM = config_lib.LanguageModelConfig


def test_grid_is_every_combination_with_typed_values_and_named_folders():
    grid = grid_values(["learning_rate=1e-3,3e-4", "num_layers=2,4", "tie_embeddings=true"], LM)
    assert grid == {"learning_rate": [1e-3, 3e-4], "num_layers": [2, 4], "tie_embeddings": [True]}
    trials = make_trials(grid, {})
    assert [t.name for t in trials] == [
        "000-learning_rate=0.001-num_layers=2-tie_embeddings=true",
        "001-learning_rate=0.001-num_layers=4-tie_embeddings=true",
        "002-learning_rate=0.0003-num_layers=2-tie_embeddings=true",
        "003-learning_rate=0.0003-num_layers=4-tie_embeddings=true"]
    assert trials[3].flags() == ["--learning_rate=0.0003", "--num_layers=4",
                                 "--tie_embeddings=true"]


def test_random_trials_are_reproducible_and_inside_their_ranges():
    grid = grid_values(["num_layers=2,4"], LM)
    ranges = range_values(["learning_rate=1e-4:1e-2:log", "warmup_steps=0:50"], LM)
    first = make_trials(grid, ranges, random_trials=20, seed=5)
    assert first == make_trials(grid, ranges, random_trials=20, seed=5)
    assert first != make_trials(grid, ranges, random_trials=20, seed=6)
    for trial in first:
        assert 1e-4 <= trial.values["learning_rate"] <= 1e-2
        assert isinstance(trial.values["warmup_steps"], int)
        assert 0 <= trial.values["warmup_steps"] <= 50
        assert trial.values["num_layers"] in (2, 4)
    # Log-uniform: about as many draws below 1e-3 (the log-midpoint) as above.
    below = sum(t.values["learning_rate"] < 1e-3 for t in make_trials({}, ranges, 400, 1))
    assert 150 < below < 250


@pytest.mark.parametrize("grid, ranges, message", [
    (["learning_rate"], [], "--grid=learning_rate: expected NAME=VALUES"),
    (["num_layer=2,4"], [], "--grid=num_layer=2,4: 'num_layer' is not a flag of this trainer"),
    (["num_layers=2,x"], [], "--grid=num_layers=2,x: 'x' is not an integer."),
    (["num_layers=2,2"], [], "--grid=num_layers=2,2: a value is repeated."),
    ([], ["tokenizer=a:b"], "--range=tokenizer=a:b: tokenizer is not numeric"),
    ([], ["learning_rate=0:1:log"], "expected LOW <= HIGH and LOW > 0 for log"),
    ([], ["learning_rate=1:0.1"], "expected LOW <= HIGH."),
])
def test_bad_sweep_flags_name_what_was_expected(grid, ranges, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|")):
        grid_values(grid, LM), range_values(ranges, LM)


def test_nothing_to_sweep_and_ranges_without_random():
    with pytest.raises(ValueError, match="Nothing to sweep"):
        make_trials({}, {})
    with pytest.raises(ValueError, match="--range needs --random=N"):
        make_trials({}, {"learning_rate": (1e-4, 1e-3, True, float)})
