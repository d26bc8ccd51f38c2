"""Progress lines for long training: one line per round with the losses and an ETA.

Short runs stay quiet: a round is logged only when rounds take ``min_seconds`` or more, so a
15k-row run prints nothing extra while a million-row run prints a line every few seconds.
A trainer module can use it too: ``callbacks=[progress.round_logger(epochs)]`` in its ``fit``.
"""

import time

from prodml.components.common.logs import get_logger

# Rounds shorter than this are not logged (a person does not wait for them).
MIN_ROUND_SECONDS = 5.0
# A long single pass (the train statistics) logs its rows read at most this often.
PASS_LOG_SECONDS = 15.0

log = get_logger(__name__)


def minutes(seconds: float) -> str:
    """``seconds`` as ``mm:ss`` (``h:mm:ss`` from an hour on)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def round_logger(rounds: int, min_seconds: float = MIN_ROUND_SECONDS, logger=None):
    """A Keras callback logging ``round i/n: loss ..., val_loss ..., ETA mm:ss`` after each round.

    The ETA assumes every remaining round runs (early stopping may end sooner). A round
    shorter than ``min_seconds`` is not logged, nor are the ones after it unless the average
    round gets long.
    """
    import tf_keras

    out = logger or log

    class RoundLogger(tf_keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.round_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if now - self.round_start < min_seconds:
                return
            done = epoch + 1
            eta = (now - self.start) / done * (rounds - done)
            values = ", ".join(f"{name} {float(value):.4f}" for name, value in (logs or {}).items()
                               if name in ("loss", "val_loss"))
            out.info("round %d/%d: %s, ETA %s", done, rounds, values, minutes(eta))

    return RoundLogger()
