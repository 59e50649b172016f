"""What sizes a run: --epochs or --train_steps (no TensorFlow)."""

import pytest

from experiments.config_flags import train_steps_or_epochs
from keras_llm import presets


def test_train_steps_alone_overrides_a_presets_epochs_with_a_note():
    config = presets.classifier_config("transformer")  # 10 epochs.
    assert config.train.epochs == 10
    resolved, note = train_steps_or_epochs(config, train_steps_set=True, epochs_set=False)
    assert resolved.train.epochs == 0
    assert note == ("note: --train_steps=2000 sets the run's length instead of the preset's "
                    "--epochs=10 (as --epochs=0 does).")
    # Not set, or --epochs=0 set with it: nothing to decide.
    assert train_steps_or_epochs(config, False, False) == (config, None)
    language_model = presets.language_model_config("shakespeare_char")
    assert train_steps_or_epochs(language_model, True, False) == (language_model, None)


def test_both_set_is_refused_naming_the_way_out():
    with pytest.raises(ValueError, match=r"--epochs=10 and --train_steps=2000 both set the length "
                                         r"of the run; keep one \(--epochs=0 trains"):
        train_steps_or_epochs(presets.classifier_config("transformer"), True, True)
