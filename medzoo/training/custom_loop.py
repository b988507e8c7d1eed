"""A training loop for ``MultiWorkerMirroredStrategy``, where Keras 3 ``fit`` fails.

It does what ``fit`` does for medzoo's runs, with the same callbacks (so the run dir gets the
same ``history.csv``, ``checkpoints/best.keras``, ``backup/`` and ``logs/``):

* each step runs the model on every worker's part of the global batch; the loss is the sum of
  per-example losses divided by the number of examples in the *global* batch, so the summed
  (all-reduced) gradients equal those of single-process training on the same global batch;
* training metrics are updated on the gathered global batch; validation runs on every worker
  over the whole validation fold (each gets the same numbers, as a single process would);
* the chief's decisions are broadcast: after a restart the chief's backup (weights and epoch)
  reaches every worker, and an early stop on the chief stops all of them.
"""

from __future__ import annotations

import logging

__all__ = ["fit"]

log = logging.getLogger("medzoo.training")


def _per_example(loss_fn, y_true, y_pred):
    """Per-example loss: the Keras loss unreduced, averaged over any non-batch axes."""
    import tensorflow as tf

    values = loss_fn.call(y_true, tf.cast(y_pred, tf.float32))
    if values.shape.rank and values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


def _broadcaster(strategy, is_chief: bool):
    """A function giving every worker the chief's values of a list of tensors (as float64: a
    sum-all-reduce to which the other workers contribute zeros; exact for float32 and counters)."""
    import tensorflow as tf

    weight = tf.constant(1.0 if is_chief else 0.0, tf.float64)

    @tf.function
    def run(values):
        summed = strategy.run(lambda: [v * weight for v in values])
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in summed]

    return lambda tensors: run([tf.cast(t, tf.float64) for t in tensors])


def _sync_from_chief(net, broadcast, initial_epoch: int) -> int:
    """Copy the chief's model and optimizer state (restored from its backup, or freshly
    initialised) and its starting epoch to every worker."""
    import tensorflow as tf

    variables = [v for v in list(net.weights) + list(net.optimizer.variables)
                 if "float" in str(v.dtype)] + [net.optimizer.iterations]
    values = broadcast([tf.convert_to_tensor(v.value) for v in variables]
                       + [tf.constant(float(initial_epoch))])
    for variable, value in zip(variables, values[:-1]):
        variable.assign(tf.cast(value, variable.dtype))
    return int(values[-1].numpy())


def fit(net, dist, train_ds, *, validation_data=None, epochs: int = 1, verbose: int = 1,
        callbacks=None, class_weight: dict | None = None, shuffle: bool = False):
    """Train compiled ``net`` under ``dist.strategy`` like ``net.fit`` would.

    Parameters
    ----------
    net : compiled ``keras.Model`` built inside ``dist.scope()``
    dist : :class:`medzoo.training.distribute.Distribution` (multiworker)
    train_ds : ``tf.data.Dataset`` batched with the global batch size
    validation_data : ``tf.data.Dataset``, optional — evaluated whole on every worker
    epochs, verbose, callbacks, class_weight : as for ``keras.Model.fit``
    shuffle : ignored (the dataset shuffles itself), accepted for ``fit``'s signature

    Returns
    -------
    ``keras.callbacks.History``
    """
    import keras
    import tensorflow as tf

    strategy = dist.strategy
    policy = getattr(tf.data.experimental.AutoShardPolicy, dist.sharding.get("policy", "FILE"))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    dist_train = strategy.experimental_distribute_dataset(train_ds.with_options(options))
    loss_fn = net.loss
    with dist.scope():
        net.optimizer.build(net.trainable_variables)
    weights = None
    if class_weight:
        size = max(class_weight) + 1
        weights = tf.constant([float(class_weight.get(k, 1.0)) for k in range(size)], tf.float32)

    variables = net.trainable_variables
    output_shape = tuple(net.outputs[0].shape)[1:]

    def replica_step(x, y):
        context = tf.distribute.get_replica_context()
        local_n = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
        global_n = context.all_reduce(tf.distribute.ReduceOp.SUM, local_n)
        # Workers rarely hold the same number of training records (FILE sharding gives whole
        # shards), so near the end of an epoch one may have nothing left while another still
        # has a batch: it then gets an empty batch, on which the model must not run (convolutions
        # on CPU fail on a batch of 0), and contributes zero gradients to the all-reduce.
        with_data = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                       tf.cast(local_n > 0, tf.float32))

        def step_on_data():
            with tf.GradientTape() as tape:
                y_pred = tf.cast(net(x, training=True), tf.float32)
                values = _per_example(loss_fn, y, y_pred) * example_weights(y)
                loss = tf.reduce_sum(values) / tf.maximum(global_n, 1.0)
                if net.losses:  # regularisers: counted once over the replicas that ran
                    loss += tf.add_n(net.losses) / tf.maximum(with_data, 1.0)
            grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            return grads, tf.reduce_sum(values), y_pred

        def no_data():
            return ([tf.zeros_like(v) for v in variables], tf.constant(0.0),
                    tf.zeros([0, *output_shape], tf.float32))

        grads, loss_sum, y_pred = tf.cond(local_n > 0, step_on_data, no_data)
        net.optimizer.apply_gradients(zip(grads, variables))
        return loss_sum, local_n, y, y_pred, example_weights(y)

    def example_weights(y):
        """Keras turns ``class_weight`` into per-example weights for the loss and the metrics."""
        if weights is None:
            return tf.ones([tf.shape(y)[0]], tf.float32)
        return tf.gather(weights, tf.cast(tf.reshape(y, [-1]), tf.int32))

    @tf.function
    def train_step(batch):
        loss_sum, n, y, y_pred, w = strategy.run(replica_step, args=batch)
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None)
        count = strategy.reduce(tf.distribute.ReduceOp.SUM, n, axis=None)
        return (total, count, strategy.gather(tf.reshape(n, [1]), axis=0),
                strategy.gather(y, axis=0), strategy.gather(y_pred, axis=0),
                strategy.gather(w, axis=0))

    @tf.function
    def val_step(x, y, w):
        y_pred = net(x, training=False)
        values = _per_example(loss_fn, y, y_pred)
        if w is not None:
            values = values * tf.cast(w, values.dtype)
        return tf.reduce_sum(values), tf.cast(tf.shape(y_pred)[0], tf.float32), y_pred

    def evaluate() -> dict:
        """Validation as ``fit`` does it; batches may carry per-example weights (``--balance``):
        the loss is then sum(weight · loss) / n and the metrics are weighted too."""
        net.reset_metrics()
        total = count = 0.0
        results = {}
        for x, y, *rest in validation_data:
            w = rest[0] if rest else None
            loss_sum, n, y_pred = val_step(x, y, w)
            total, count = total + float(loss_sum), count + float(n)
            results = net.compute_metrics(None, y, y_pred, w)
        logs = {k: float(v) for k, v in results.items() if k != "loss"}
        return {"loss": total / max(count, 1.0), **logs}

    history = keras.callbacks.History()
    steps = int(train_ds.cardinality()) if int(train_ds.cardinality()) > 0 else None
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [history], add_progbar=bool(verbose) and dist.is_chief,
        model=net, verbose=verbose, epochs=epochs, steps=steps)
    net.stop_training = False
    callback_list.on_train_begin()
    broadcast = _broadcaster(strategy, dist.is_chief)
    initial_epoch = _sync_from_chief(net, broadcast, int(getattr(net, "_initial_epoch", 0) or 0))
    if initial_epoch:
        log.warning("note: resuming from the chief's backup at epoch %d", initial_epoch + 1)
    seen = dist.info.setdefault("examples_per_worker", [0] * dist.num_workers)
    logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        net.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        total, count, step = 0.0, 0.0, 0
        for batch in dist_train:
            callback_list.on_train_batch_begin(step)
            loss_sum, n, per_worker, y, y_pred, w = train_step(batch)
            if epoch == initial_epoch:  # what each worker read: FILE sharding splits it
                seen[:] = [a + int(b) for a, b in zip(seen, per_worker.numpy())]
            total, count = total + float(loss_sum), count + float(n)
            metrics = net.compute_metrics(None, y, y_pred, w if weights is not None else None)
            callback_list.on_train_batch_end(step, {"loss": total / max(count, 1.0)})
            step += 1
        logs = {k: float(v) for k, v in metrics.items() if k != "loss"} if step else {}
        logs["loss"] = total / max(count, 1.0)
        if validation_data is not None:
            logs.update({f"val_{k}": v for k, v in evaluate().items()})
        callback_list.on_epoch_end(epoch, logs)
        if float(broadcast([tf.constant(float(bool(net.stop_training)))])[0]) > 0.5:
            break  # the chief's early stop holds for every worker
    callback_list.on_train_end(logs)
    return history
