"""keras_llm: Keras 3 language models and text classifiers, trained data-parallel with tf.distribute."""

__version__ = "0.1.0"
