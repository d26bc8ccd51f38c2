"""Loading a SavedModel that prodml's train exported, with one clear paragraph when it is not one."""

from prodml.components.common import keys
from prodml.components.common.errors import ConfigError

MODEL_HINT = "Give the model folder that train wrote."


def load_signature(model_dir: str, name: str, hint: str = MODEL_HINT):
    """The loaded SavedModel and its signature ``name``; ConfigError naming the folder otherwise.

    The caller keeps the loaded object: a signature alone loses its variables to garbage collection.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(model_dir)
    except (OSError, tf.errors.OpError) as e:
        raise ConfigError(f"Cannot load the SavedModel in {model_dir}: {e}. {hint}") from e
    if name not in loaded.signatures:
        raise ConfigError(f"The SavedModel in {model_dir} has no '{name}' signature "
                          f"(it has: {', '.join(loaded.signatures) or 'none'}). Export it with prodml's train.")
    return loaded, loaded.signatures[name]


def load_examples_signature(model_dir: str):
    """The model's ``serving_examples`` signature as a function of a batch of serialized examples."""
    loaded, signature = load_signature(model_dir, keys.EXAMPLES_SIGNATURE)
    return lambda batch, _model=loaded: signature(examples=batch)
