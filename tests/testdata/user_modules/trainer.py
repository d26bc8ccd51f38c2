"""Example trainer module: a logistic regression on the float transformed features.

prodml calls ``run_fn(fn_args)`` with seeds set, then embeds the transform graph and exports
the returned model; ``fn_args.dataset`` streams ``(features, label)`` batches.
"""

import tensorflow as tf
import tf_keras


def run_fn(fn_args):
    names = sorted(name for name, spec in fn_args.transformed_feature_spec.items()
                   if name != fn_args.label and spec.dtype == tf.float32)
    inputs = {name: tf_keras.Input(shape=(), name=name) for name in names}
    x = tf_keras.layers.Concatenate()([tf_keras.layers.Reshape((1,))(inputs[n]) for n in names])
    output = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    model = tf_keras.Model(inputs=inputs, outputs=output)
    learning_rate = fn_args.hyperparameters.get("learning_rate", 0.01)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    model.fit(fn_args.dataset(fn_args.train_files, shuffle=True), epochs=fn_args.epochs,
              validation_data=fn_args.dataset(fn_args.eval_files), verbose=0)
    return model
