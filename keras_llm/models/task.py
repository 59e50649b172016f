"""The base of every task model: a backbone and a head, the backbone's config nested in its own."""

import keras


class Task(keras.Model):
    """A `keras.Model` holding `self.backbone`; `get_config` nests it, `from_config` rebuilds it.

    KerasHub's `Task` split: subclasses set `self.backbone` in `__init__`, add their own head and
    fields, and extend `get_config` with those fields.
    """

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
