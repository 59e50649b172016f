"""The distributed train and evaluation steps: one code path for every `tf.distribute` strategy.

Why not `Model.fit`: with Keras 3.15.1 it fails under `MultiWorkerMirroredStrategy` before the
first step (`ValueError: Attempt to convert a value (PerReplica:{...})` from
`_maybe_symbolic_build`), exact resume needs the data position, and its callbacks are not
chief-aware. The step follows the TF custom-training-loop guide:

1. Each replica sums the loss over its real targets; the sum is divided by the GLOBAL number of
   real targets (all-reduced), so the loss is the mean over the global batch however it is split
   across replicas and micro-batches.
2. Gradients are clipped by the global norm of the all-reduced gradient, so the clip sees the
   same gradient on 1 or N replicas (Keras's own `global_clipnorm` clips each replica's share
   before its all-reduce, which would depend on the number of replicas).
3. The update is applied once per variable, not once per replica, and its decoupled weight
   decay too. On several replicas with Adam or AdamW, each device applies Keras's update
   arithmetic to its own copy of the weights in one call (`keras_llm.training.device_update`);
   with other optimizers, Keras's optimizer all-reduces the shares and updates each mirrored
   variable.
4. Dropout masks follow each example's row in the global batch: the step enters
   `global_batch_position(step, first_example)` around each replica's (micro-)batch, and the
   models' `ReplicaInvariantDropout` layers draw from it (Keras's `Dropout` would draw the same
   masks on every replica, whatever rows it holds).
5. With a `WeightAverage`, the moving average of the weights is updated after every step and
   evaluation uses it (see `keras_llm.training.weight_average`).

Speed (measured with `python -m experiments.benchmark`; at nanoGPT's CPU shape the step is
thousands of small ops, and together these made it about 1.6x faster on a 2-core CPU):

- `train_steps(iterator, num_steps)` runs several steps in one `tf.function` call (a `tf.range`
  loop, as Keras's `steps_per_execution`) and returns every step's loss and gradient norm, so
  the host syncs once per call instead of once per step.
- With `jit_compile`, XLA compiles the replica step (and, on one replica, the evaluation's
  forward pass). On one replica (the default strategy or a
  `OneDeviceStrategy`) that is the whole step: forward, backward, clip and the AdamW update.
  On several replicas the all-reduce goes through the strategy's `merge_call`, which XLA
  cannot compile: the forward and backward pass are one compiled call, and each device's
  Adam/AdamW update another (Keras's optimizer would update variable by variable, uncompiled:
  at nanoGPT's shape on 2 logical CPUs the step went from 0.84x to 1.07x of one device).
- On one replica the all-reduces are skipped: a sum over one replica is the value itself.
"""

import contextlib

import tensorflow as tf

from keras_llm.layers.replica_invariant_dropout import global_batch_position
from keras_llm.training import device_update


class Trainer:
    """Owns the compiled train and evaluation steps of one model under one strategy.

    Args:
        strategy: a `tf.distribute.Strategy`; `model` and `optimizer` were created in its scope.
        model: a `keras.Model` mapping features to logits.
        optimizer: a Keras 3 optimizer (no clipnorm: clipping happens here).
        loss_fn: `(targets, logits, mask) -> (loss_sum, count)`, see `keras_llm.training.losses`.
        gradient_clip_norm: clip the global gradient to this norm; 0 disables.
        gradient_accumulation_steps: split each replica's batch into this many micro-batches and
            sum their gradients before one update (same result, less activation memory).
        metrics_fn: optional `(targets, logits, mask) -> dict of tensors` summed over the
            evaluation set (e.g. a confusion matrix); all-reduced over replicas.
        weight_average: optional `WeightAverage` of `model`, updated after every step and
            swapped in by `evaluate` and `evaluation_weights`.
        jit_compile: bool, compile the replica step and, on several replicas, each device's
            update (see the module docstring), and on one replica the evaluation's forward
            pass, with XLA. Sampling and exported signatures never use XLA (stock TF Serving
            runs without it). Each new batch shape compiles again (for a language model's
            evaluation: once more for the last, partial batch), so leave it off for batches
            padded to varying lengths (classifiers).
    """

    def __init__(self, strategy, model, optimizer, loss_fn, gradient_clip_norm=0.0,
                 gradient_accumulation_steps=1, metrics_fn=None, weight_average=None,
                 jit_compile=False):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.gradient_clip_norm = float(gradient_clip_norm)
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.metrics_fn = metrics_fn
        self.weight_average = weight_average
        self.jit_compile = bool(jit_compile)
        self._one_replica = strategy.num_replicas_in_sync == 1
        # Where XLA can compile the whole replica step: no merge_call to another replica in it.
        default_strategy = (not tf.distribute.has_strategy()
                            and strategy is tf.distribute.get_strategy())
        whole_step = self._one_replica and (
            isinstance(strategy, tf.distribute.OneDeviceStrategy) or default_strategy)
        self._replica_step_fn = self._replica_step
        self._gradients_fn = self._loss_and_gradients
        # On several replicas, Adam/AdamW's update runs on each device's copy of the weights in
        # one call (see `keras_llm.training.device_update`): 13 -> about 2 ms of a 43 ms step.
        self._device_update = None
        if not self._one_replica and optimizer is not None:
            if not optimizer.built:  # Its moments must exist before the step is traced.
                with strategy.scope():
                    optimizer.build(model.trainable_variables)
            if device_update.unsupported_reason(optimizer, model.trainable_variables) is None:
                self._device_update = device_update.DeviceUpdate(
                    strategy, optimizer, model.trainable_variables, self.jit_compile)
        if self.jit_compile and whole_step:
            self._replica_step_fn = tf.function(self._replica_step, jit_compile=True)
        elif self.jit_compile:
            self._gradients_fn = tf.function(self._loss_and_gradients, jit_compile=True)
        # The forward pass of a validation batch. At nanoGPT's shape XLA makes a validation pass
        # 1.8x faster on 2 CPU cores (3.2 s -> 1.8 s); the main job's 8 passes were a fifth of
        # its time. On one replica only: traced for an evaluation step on several, the compiled
        # pass ran on the first device and failed to read the second replica's variables
        # ("Trying to access resource ... located in device CPU:1 from device CPU:0").
        self._evaluation_fn = self._replica_evaluation
        if self.jit_compile and whole_step:
            self._evaluation_fn = tf.function(self._replica_evaluation, jit_compile=True)
        self.train_step = tf.function(self._train_step)
        self.train_steps = tf.function(self._train_steps)
        self._evaluation_steps = {}  # One compiled step per dataset element_spec.

    # ----------------------------------------------------------------------------- training

    def _loss_and_gradients(self, features, targets, mask, global_count, first_example):
        # Dropout masks follow each example's row in the global batch, not the replica or
        # micro-batch that holds it (`keras_llm.layers.replica_invariant_dropout`).
        with tf.GradientTape() as tape, global_batch_position(self.optimizer.iterations,
                                                              first_example):
            logits = self.model(features, training=True)
            loss_sum, _ = self.loss_fn(targets, logits, mask)
            loss = loss_sum / global_count
            if self.model.losses:
                # Regularization terms are added on every replica and micro-batch, then summed
                # by the all-reduce: scale them so they count once (tf.nn.scale_regularization_loss).
                copies = self.strategy.num_replicas_in_sync * self.gradient_accumulation_steps
                loss += tf.add_n(self.model.losses) / copies
        gradients = tape.gradient(loss, self.model.trainable_variables)
        # Embedding gradients come as IndexedSlices with repeated rows; the global norm of their
        # values is not the norm of the gradient, so densify (cheap at these vocabulary sizes).
        return loss_sum, [tf.convert_to_tensor(g) for g in gradients]

    def _all_reduce_sum(self, values):
        """The sum over replicas; on one replica the values themselves (no merge_call)."""
        if self._one_replica:
            return values
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

    def _replica_step(self, features, targets, mask):
        variables = self.model.trainable_variables
        # The mean is over the global batch: count its real targets before the forward pass.
        count = tf.reduce_sum(tf.cast(mask, tf.float32))
        # tf.distribute splits a global batch over the replicas in order, evenly but for a last
        # partial batch (7 rows over 2 replicas: 4 and 3). This replica's first row, for dropout,
        # is the number of rows the replicas before it hold.
        replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
        rows = tf.one_hot(replica_id, self.strategy.num_replicas_in_sync) * tf.cast(
            tf.shape(mask)[0], tf.float32)  # (replicas,): this replica's row count at its index
        global_count, rows = self._all_reduce_sum((count, rows))
        global_count = tf.maximum(global_count, 1.0)
        first_example = tf.cast(tf.reduce_sum(rows[:replica_id]), tf.int32)
        micro_batches = self.gradient_accumulation_steps
        if micro_batches == 1:
            loss_sum, gradients = self._gradients_fn(features, targets, mask, global_count,
                                                     first_example)
        else:
            def split(x):  # (batch, ...) -> (micro_batches, ceil(batch / micro_batches), ...)
                # A final partial batch may leave this replica a batch the micro-batch count does
                # not divide: pad with rows whose mask is 0 (zeros), which add nothing.
                padding = tf.math.floormod(-tf.shape(x)[0], micro_batches)
                x = tf.pad(x, tf.concat([[[0, padding]], tf.zeros([tf.rank(x) - 1, 2], tf.int32)], 0))
                return tf.reshape(x, tf.concat([[micro_batches, -1], tf.shape(x)[1:]], axis=0))

            features, targets, mask = tf.nest.map_structure(split, (features, targets, mask))
            loss_sum = tf.constant(0.0)
            gradients = [tf.zeros_like(v) for v in variables]
            for i in tf.range(micro_batches):
                micro_features = tf.nest.map_structure(lambda x: x[i], features)
                micro_loss, micro_gradients = self._gradients_fn(
                    micro_features, targets[i], mask[i], global_count,
                    first_example + i * tf.shape(mask)[1],
                )
                loss_sum += micro_loss
                gradients = [g + m for g, m in zip(gradients, micro_gradients)]

        # The clip must see the global gradient: all-reduce once here for the global norm.
        global_gradients = self._all_reduce_sum(gradients)
        gradient_norm = tf.linalg.global_norm(global_gradients)

        def clipped(values):
            if self.gradient_clip_norm <= 0:
                return values
            # tf.clip_by_global_norm's factor: clip_norm / max(norm, clip_norm).
            factor = self.gradient_clip_norm / tf.maximum(gradient_norm, self.gradient_clip_norm)
            return [value * factor for value in values]

        loss = self._all_reduce_sum(loss_sum) / global_count
        outputs = {"loss": loss, "gradient_norm": gradient_norm}
        if self._device_update is not None:
            # Each device applies the whole clipped gradient to its own copy of the weights,
            # after strategy.run (`_train_step`).
            return outputs, clipped(global_gradients)
        # Keras's optimizer all-reduces the gradients it is given (in replica context): give it
        # this replica's share scaled by the clip factor, sum_r(factor * g_r) = factor * g, the
        # clipped global gradient. On one replica the share is the global gradient.
        learning_rate = self.optimizer.learning_rate  # The rate this update uses.
        self.optimizer.apply(clipped(gradients), variables)
        outputs["learning_rate"] = tf.convert_to_tensor(learning_rate, tf.float32)
        return outputs

    def _train_step(self, iterator):
        features, targets, mask = next(iterator)
        outputs = self.strategy.run(self._replica_step_fn, args=(features, targets, mask))
        if self._device_update is not None:
            outputs, gradients = outputs
            outputs["learning_rate"] = self._device_update(gradients)
        if self.weight_average is not None:
            self.weight_average.update()
        # Every replica holds the same all-reduced values; take the first.
        return tf.nest.map_structure(
            lambda value: self.strategy.experimental_local_results(value)[0], outputs
        )

    def _train_steps(self, iterator, num_steps):
        """`num_steps` train steps in one call (Keras's `steps_per_execution`).

        Args:
            iterator: an iterator over the distributed training dataset.
            num_steps: int32 scalar tensor >= 1 (a tensor, so chunks of any length share one
                trace).

        Returns:
            dict: "loss" and "gradient_norm", float32 `(num_steps,)`, one value per step in
            order (the same values `train_step` returns one at a time); "learning_rate", the
            float32 scalar rate of the last step.
        """
        step_losses = tf.TensorArray(tf.float32, size=num_steps)
        gradient_norms = tf.TensorArray(tf.float32, size=num_steps)
        learning_rate = tf.constant(0.0)
        for i in tf.range(num_steps):
            outputs = self._train_step(iterator)
            step_losses = step_losses.write(i, outputs["loss"])
            gradient_norms = gradient_norms.write(i, outputs["gradient_norm"])
            learning_rate = outputs["learning_rate"]
        return {"loss": step_losses.stack(), "gradient_norm": gradient_norms.stack(),
                "learning_rate": learning_rate}

    # --------------------------------------------------------------------------- evaluation

    def _replica_evaluation(self, features, targets, mask):
        logits = self.model(features, training=False)
        loss_sum, count = self.loss_fn(targets, logits, mask)
        sums = {"loss_sum": loss_sum, "count": count}
        if self.metrics_fn is not None:
            sums.update(self.metrics_fn(targets, logits, mask))
        return sums

    def _evaluation_step(self, batch):
        sums = self.strategy.run(self._evaluation_fn, args=tuple(batch))
        return tf.nest.map_structure(
            lambda value: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None), sums
        )

    def evaluation_weights(self):
        """A context in which the model holds the weights to evaluate: the average, if kept."""
        if self.weight_average is None:
            return contextlib.nullcontext()
        return self.weight_average.swapped_in()

    def evaluate(self, distributed_dataset):
        """Sums the loss and metrics over a whole distributed dataset, with `evaluation_weights`.

        Returns:
            dict of numpy values: "loss" (mean per real target, nats), "count" (real targets
            seen; every example is counted exactly once, also for a last partial batch), and the
            summed outputs of `metrics_fn`.
        """
        # Trace on the dataset's element_spec (batch and length dimensions None), not on the
        # first batch's shapes: batches are padded to their longest text, and a last batch
        # smaller than the number of replicas leaves some replicas an empty batch, which a
        # step traced on static shapes would not accept (Keras's LSTM fails on a static 0).
        spec = distributed_dataset.element_spec
        key = repr(spec)
        if key not in self._evaluation_steps:
            self._evaluation_steps[key] = tf.function(self._evaluation_step,
                                                      input_signature=[spec])
        evaluation_step = self._evaluation_steps[key]
        totals = None
        with self.evaluation_weights():
            for batch in distributed_dataset:
                sums = evaluation_step(batch)
                totals = sums if totals is None else tf.nest.map_structure(tf.add, totals, sums)
        if totals is None:
            raise ValueError("The evaluation dataset is empty.")
        totals = tf.nest.map_structure(lambda t: t.numpy(), totals)
        totals["loss"] = float(totals["loss_sum"] / max(totals["count"], 1.0))
        return totals
