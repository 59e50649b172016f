"""The loop's TensorBoard hooks: weight norm, histograms, the train step's graph, the profile.

`loop.run_training` calls `before_step(step)` and `after_step(step)` around every compiled
call of training steps (a call ends where `next_stop` says) and `close()` at the end;
everything else is decided here, on the chief only (other workers get a `Dashboards` that
does nothing, so their runs write no event files):

- `weight_norm` (global L2 norm of the trainable weights) in `logs/train` at every log step;
- every `histogram_every` steps, histograms in `logs/train` of each trainable weight
  (`weights/<path>`), of its gradient (`gradients/<path>`) and of activations
  (`activations/...`); gradients and activations are of a fixed validation batch at the
  current weights, in inference mode, computed here rather than taken from the compiled train
  step, so the step itself stays as fast with histograms on as off;
- the graph of the train step, traced at this process's first step (`tf.summary.trace_on`,
  exported as `train_step` in `logs/train`, TensorBoard's Graphs tab);
- a `tf.profiler` trace of steps START..END of `--profile_steps` into `logs/plugins/profile`.
"""

import tensorflow as tf

from keras_llm.evaluation.attention_maps import transformer_backbone, transformer_trace


class Dashboards:
    """Per-step TensorBoard extras of one run.

    Args:
        run_directory: the run's `RunDirectory`; nothing is written unless it is the chief's.
        trainer: the run's `Trainer` (its model and loss function).
        log_interval: int, steps between the train scalars (`weight_norm` follows them).
        train_steps: int, the last step (always logged).
        histogram_every: int, steps between histograms; 0 = none.
        profile_steps: `(start, end)` 1-based inclusive steps to profile, or None.
        probe_batch: `(features, targets, mask)` of a few validation examples, as the
            training batches (features the model's input dict), for the gradient and
            activation histograms; required if `histogram_every` > 0.
    """

    def __init__(self, run_directory, trainer, *, log_interval, train_steps, histogram_every=0,
                 profile_steps=None, probe_batch=None):
        self.enabled = run_directory.is_chief
        self.log_dir = run_directory.file("logs")
        self.writer = run_directory.summary_writer("train")
        self.model = trainer.model
        self.loss_fn = trainer.loss_fn
        self.log_interval = log_interval
        self.train_steps = train_steps
        self.histogram_every = histogram_every
        self.profile_steps = profile_steps
        self.probe_batch = probe_batch
        if histogram_every and probe_batch is None:
            raise ValueError("histogram_every > 0 needs a probe_batch for the gradient and "
                             "activation histograms.")
        self._graph_pending = True  # Trace the train step at this process's first step.
        self._tracing = False
        self._profiling = False

    def next_stop(self, step):
        """The first step after `step` at which the loop's compiled call must end.

        The loop runs several steps per call (`--steps_per_execution`); the hooks run between
        calls, so a call ends before the profile's first step, at its last step, and at every
        histogram step. Returns `train_steps` when nothing is due earlier.
        """
        stops = [self.train_steps]
        # Every worker ends its calls at the same steps (their collectives pair up), so this
        # does not depend on `enabled`.
        if self.histogram_every:
            stops.append((step // self.histogram_every + 1) * self.histogram_every)
        if self.profile_steps:
            start, end = self.profile_steps
            stops += [s for s in (start - 1, end) if s > step]
        return max(step + 1, min(stops))

    def before_step(self, step):
        """Called before training step `step` (1-based), the first of a compiled call, runs."""
        if not self.enabled:
            return
        if self._graph_pending:
            self._graph_pending = False
            tf.summary.trace_on(graph=True, profiler=False)
            self._tracing = True
        if self.profile_steps and step == self.profile_steps[0]:
            tf.profiler.experimental.start(self.log_dir)
            self._profiling = True

    def after_step(self, step):
        """Called after training step `step`, the last of a compiled call, ran with a finite loss."""
        if not self.enabled:
            return
        if self._tracing:
            self._tracing = False
            with self.writer.as_default(step=step):
                tf.summary.trace_export(name="train_step", step=step)
        if self._profiling and step == self.profile_steps[1]:
            self._stop_profiler()
        if step % self.log_interval == 0 or step == self.train_steps:
            with self.writer.as_default(step=step):
                tf.summary.scalar("weight_norm", weight_norm(self.model))
        if self.histogram_every and step % self.histogram_every == 0:
            self.write_histograms(step)

    def write_histograms(self, step):
        """Histograms of weights, gradients and activations at `step` (see the module doc)."""
        features, targets, mask = self.probe_batch
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(features, training=False)
            loss_sum, count = self.loss_fn(targets, logits, mask)
            loss = loss_sum / tf.maximum(count, 1.0)
        gradients = tape.gradient(loss, variables)
        with self.writer.as_default(step=step):
            for variable, gradient in zip(variables, gradients):
                tf.summary.histogram(f"weights/{variable.path}", tf.convert_to_tensor(variable))
                if gradient is not None:
                    tf.summary.histogram(f"gradients/{variable.path}",
                                         tf.convert_to_tensor(gradient))
            for name, values in activations(self.model, features, logits).items():
                tf.summary.histogram(f"activations/{name}", values)
        self.writer.flush()

    def close(self):
        """Stops a profile still running (training ended or failed inside the window)."""
        if self._profiling:
            self._stop_profiler()
        if self._tracing:
            tf.summary.trace_off()
            self._tracing = False
        self.writer.flush()

    def _stop_profiler(self):
        tf.profiler.experimental.stop()
        self._profiling = False


def weight_norm(model):
    """The global L2 norm of `model`'s trainable weights, a float."""
    return float(tf.linalg.global_norm([tf.convert_to_tensor(v)
                                        for v in model.trainable_variables]))


def activations(model, features, logits):
    """Named activations of one batch: each Transformer block's output (`block_<i>`), else
    the backbone's output, and the logits.

    Returns:
        dict name -> float tensor.
    """
    backbone = transformer_backbone(model)
    values = {}
    if backbone is not None:
        for index, (hidden, _) in enumerate(transformer_trace(backbone, features)):
            values[f"block_{index}"] = hidden
    elif getattr(model, "backbone", None) is not None:
        values["backbone_output"] = tf.convert_to_tensor(model.backbone(features, training=False))
    values["logits"] = logits
    return values


def probe_batch(dataset, size=4):
    """The first `size` examples of a `(features, targets, mask)` dataset's first batch, for
    `Dashboards(probe_batch=...)` and the attention maps."""
    features, targets, mask = next(iter(dataset))
    return tf.nest.map_structure(lambda tensor: tensor[:size], (features, targets, mask))


def write_attention_maps(writer, model, features, step, tokenizer=None):
    """`attention/layer_<i>` images of the first example of `features`, one per Transformer
    block, heads tiled left to right (`attention_maps.attention_image`; row i is query token
    i, column j key token j), and with a `tokenizer` the text they are of (`attention/text`);
    nothing for a model without a `TransformerBackbone`.

    Returns:
        int, the number of images written.
    """
    from keras_llm.evaluation.attention_maps import attention_image

    backbone = transformer_backbone(model)
    if backbone is None:
        return 0
    first = tf.nest.map_structure(lambda tensor: tensor[:1], features)
    trace = transformer_trace(backbone, first)
    with writer.as_default(step=step):
        for index, (_, probs) in enumerate(trace):
            tf.summary.image(f"attention/layer_{index}", attention_image(probs[0]))
        if tokenizer is not None:
            text = tokenizer.detokenize(first["token_ids"][0]).numpy().decode("utf-8", "replace")
            tf.summary.text("attention/text", "```\n" + text + "\n```")
    return len(trace)
