"""An LSTM that multiplies the inputs of all time steps by the input kernel at once."""

import keras
import tensorflow as tf
from keras import ops
# The time loop Keras's own recurrent layers run (masking, go_backwards, unroll): there is no
# public `keras.ops` for it in Keras 3.15, which setup.cfg pins.
from keras.src.backend import rnn as keras_rnn


@keras.saving.register_keras_serializable(package="keras_llm")
class PrecomputedInputLSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` whose input projection runs once per sequence, not once per step.

    An LSTM step computes `z_t = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias` and the
    gates from `z_t`. Only the second product depends on the previous step, so this layer
    computes `x @ kernel + bias` for every position in one `(batch * seq_len, input_dim) @
    (input_dim, 4 * units)` matmul before the time loop, and the loop multiplies by the
    recurrent kernel alone (Appleyard et al. 2016, "Optimizing Performance of Recurrent Neural
    Networks on GPUs", section 3.1; cuDNN and PyTorch's CPU LSTM do the same). Keras 3.15 does
    this only inside cuDNN, on a GPU; on a CPU its loop runs both products per step. At the
    shakespeare_char_lstm preset's shape (2 x 256 units, 12 x 64 tokens, 2-core CPU) the
    training step went from 97 to 81 ms (`python -m experiments.benchmark`, lstm section).

    Same weights (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`), arguments, masking
    and outputs as `keras.layers.LSTM`, up to float rounding: a `tf.train.Checkpoint` (what
    keras_llm writes) of either loads into the other. Keras's `.weights.h5` files do not swap:
    they name a top-level layer's weights after its class.

    Keras's own loop runs instead where Keras would use cuDNN (a visible GPU and `use_cudnn`
    "auto" or True: cuDNN already projects the inputs at once), and in training when the cell
    applies dropout (`dropout` or `recurrent_dropout` > 0), whose masks Keras applies inside
    its cell.

    Args:
        units, **kwargs: as `keras.layers.LSTM`.

    Call arguments:
        sequences: float `(batch, seq_len, input_dim)`.
        initial_state: optional `[h, c]`, each float `(batch, units)`.
        mask: optional bool `(batch, seq_len)`, True at real steps; a masked step leaves the
            state unchanged (as `keras.layers.LSTM`).
        training: bool.

    Returns:
        As `keras.layers.LSTM`: `(batch, seq_len, units)` with `return_sequences`, else
        `(batch, units)`; with `return_state`, also the final `h` and `c`.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self._uses_keras_loop(training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        cell = self.cell
        # Cast here: under a mixed policy Keras casts the variables to the compute dtype only
        # inside a layer's `__call__`, and `LSTMBackbone.prefill` calls `inner_loop` directly.
        kernel = ops.cast(cell.kernel, self.compute_dtype)  # (input_dim, 4 * units)
        recurrent_kernel = ops.cast(cell.recurrent_kernel, self.compute_dtype)  # (units, 4 * units)
        # (batch, seq_len, 4 * units): the input half of every step's pre-activations.
        projected_inputs = ops.matmul(sequences, kernel)
        if cell.use_bias:
            projected_inputs = projected_inputs + ops.cast(cell.bias, self.compute_dtype)

        def step(projected_input, states):  # (batch, 4 * units), [h, c] each (batch, units)
            h_previous, c_previous = states
            z = projected_input + ops.matmul(h_previous, recurrent_kernel)
            z_input, z_forget, z_cell, z_output = ops.split(z, 4, axis=-1)  # (batch, units)
            c = (cell.recurrent_activation(z_forget) * c_previous
                 + cell.recurrent_activation(z_input) * cell.activation(z_cell))
            h = cell.recurrent_activation(z_output) * cell.activation(c)
            return h, [h, c]

        return keras_rnn(
            step,
            projected_inputs,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )

    def _uses_keras_loop(self, training):
        """Whether `keras.layers.LSTM`'s own `inner_loop` runs: cuDNN, or per-step dropout."""
        if self.use_cudnn is True or (self.use_cudnn == "auto"
                                      and tf.config.list_logical_devices("GPU")):
            return True
        return bool(training) and (self.cell.dropout > 0 or self.cell.recurrent_dropout > 0)
