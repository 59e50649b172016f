"""absl flags generated from the config dataclasses: one flag per field, same name and help.

A flag overrides the preset only when the user set it (`FLAGS[name].present`), so presets stay
the single source of defaults.
"""

import dataclasses

from absl import flags

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
