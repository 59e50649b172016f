"""absl flags generated from the config dataclasses: one flag per field, same name and help.

A flag overrides the preset only when the user set it (`FLAGS[name].present`), so presets stay
the single source of defaults. Nothing here imports TensorFlow: the config is resolved and
checked before a command loads it.
"""

import dataclasses

from absl import flags

from keras_llm import config as config_lib

_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}


def define_config_flags(config_class):
    """Defines a flag for every field of every section dataclass of `config_class`.

    Returns:
        dict section name -> list of field names, for `apply_config_flags`.
    """
    sections = {}
    for section in dataclasses.fields(config_class):
        if not (section.default_factory is not dataclasses.MISSING
                and dataclasses.is_dataclass(section.default_factory)):
            continue
        names = []
        for field in dataclasses.fields(section.default_factory):
            _DEFINE[field.type](field.name, None, field.metadata.get("help", ""))
            names.append(field.name)
        sections[section.name] = names
    return sections


def apply_config_flags(config, sections, flag_values=flags.FLAGS):
    """Returns `config` with every flag the user set applied to its section."""
    replaced = {}
    for section, names in sections.items():
        overrides = {n: flag_values[n].value for n in names if flag_values[n].present}
        if overrides:
            replaced[section] = dataclasses.replace(getattr(config, section), **overrides)
    return dataclasses.replace(config, **replaced)


def resolve_config(preset_config, sections, validate, flag_values=flags.FLAGS, log=print):
    """The config a command runs: the preset, the flags the user set, checked.

    A warm-up the user did not set is fitted to a short `--train_steps`
    (`config.fit_warmup_to_train_steps`), with one note through `log`, logged only once the
    config has passed `validate`.

    Args:
        preset_config: the config of the chosen preset.
        sections: as returned by `define_config_flags`.
        validate: `config_validation.validate` or `config_validation.validate_classifier`.
        flag_values: the parsed flags.
        log: a print-like function for the note.

    Returns:
        The validated config.

    Raises:
        ValueError: naming every flag at fault (`validate`).
    """
    config = apply_config_flags(preset_config, sections, flag_values)
    config, sizing_note = train_steps_or_epochs(config, flag_values["train_steps"].present,
                                                flag_values["epochs"].present)
    config, warmup_note = config_lib.fit_warmup_to_train_steps(
        config, flag_values["warmup_steps"].present)
    config = validate(config)
    # Notes only for a config that runs: a flag error is the one thing a failed command says.
    for note in (sizing_note, warmup_note):
        if note:
            log(note)
    return config


def train_steps_or_epochs(config, train_steps_set, epochs_set):
    """Decides what sizes the run when a preset sizes it by epochs (the classifiers').

    `--epochs=N` (N > 0) trains N passes over the training split; `--epochs=0` trains
    `--train_steps` steps. A `--train_steps` the user set without `--epochs` sizes the run
    (the preset's epochs would otherwise ignore it silently), with one note; both set, with
    `--epochs` > 0, is refused as ambiguous.

    Returns:
        `(config, note)`: the config, with `train.epochs` set to 0 or not, and a note or None.

    Raises:
        ValueError: both --train_steps and --epochs > 0 were set.
    """
    train = config.train
    if not (train_steps_set and train.epochs):
        return config, None
    if epochs_set:
        raise ValueError(
            f"--epochs={train.epochs} and --train_steps={train.train_steps} both set the length "
            "of the run; keep one (--epochs=0 trains --train_steps steps).")
    note = (f"note: --train_steps={train.train_steps} sets the run's length instead of the "
            f"preset's --epochs={train.epochs} (as --epochs=0 does).")
    return dataclasses.replace(config, train=dataclasses.replace(train, epochs=0)), note
