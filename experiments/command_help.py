"""`--help` for the commands: what the command does, examples, and its own flags by section.

absl's `--help` lists only the flags defined in the main module (not the config flags, which
`config_flags` defines), shows none of the preset's values, and exits with status 1. Here each
command's help is its module docstring (summary and example invocations), then the flags the
command defines, then one section per config dataclass (data / model / train) with the value
each flag takes from the chosen preset when it is not set. absl's own flags (`--flagfile`,
`--verbosity`, ...) stay behind `--helpfull`.
"""

import dataclasses
import textwrap

_INDENT = "      "


def _describe(name, value, help_text):
    if value is None:
        shown = " (not set)"
    elif isinstance(value, bool):
        shown = f"={str(value).lower()}"  # As absl spells booleans: --lower_case=false.
    elif isinstance(value, str) and (not value or not value.isprintable() or " " in value):
        shown = f"={value!r}"  # '' and '\n' stay visible.
    else:
        shown = f"={value}"
    lines = [f"  --{name}{shown}"]
    lines += textwrap.wrap(help_text, 96, initial_indent=_INDENT, subsequent_indent=_INDENT)
    return lines


def format_help(docstring, command_flags, config=None):
    """The text of a command's `--help`.

    Args:
        docstring: the command module's docstring: a summary line, then examples.
        command_flags: the command's own absl flags (`FlagValues[name]` objects), in order.
        config: the config dataclass the chosen preset resolves to (its sections' fields are
            flags too), or None for commands without one.

    Returns:
        str, ending with a newline.
    """
    lines = [textwrap.dedent(docstring).strip(), "", "flags:"]
    for flag in command_flags:
        lines += _describe(flag.name, flag.default, flag.help)
    if config is not None:
        for section in dataclasses.fields(config):
            values = getattr(config, section.name)
            if not dataclasses.is_dataclass(values):
                continue
            lines += ["", f"{section.name} flags (values of --preset={config.preset}):"]
            for field in dataclasses.fields(values):
                value = getattr(values, field.name)
                help_text = field.metadata.get("help", "")
                if value != field.default:
                    help_text += f" (Default without the preset: {field.default!r}.)"
                lines += _describe(field.name, value, help_text)
    lines += ["", "--flagfile=FILE reads flags from a file; --helpfull also lists absl's own "
                  "flags."]
    return "\n".join(lines) + "\n"
