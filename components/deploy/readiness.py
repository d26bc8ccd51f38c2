"""Waiting for an InferenceService to become Ready, by polling its status.

Ready means the ``Ready`` condition is ``True`` for the generation we wrote
(``status.observedGeneration >= metadata.generation``), so a Ready left over from the previous
spec does not count. A model that KServe reports as failed to load stops the wait at once.
"""

import time
from typing import Callable, Optional

from prodml.components.common.errors import DeploymentError

_FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")

# Module-level so that tests can make waiting instantaneous.
clock = time.monotonic
sleep = time.sleep


def condition(isvc: dict, kind: str = "Ready") -> Optional[dict]:
    for c in (isvc.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def is_ready(isvc: dict) -> bool:
    ready = condition(isvc)
    observed = (isvc.get("status") or {}).get("observedGeneration")
    generation = (isvc.get("metadata") or {}).get("generation")
    current = observed is None or generation is None or observed >= generation
    return bool(ready) and ready.get("status") == "True" and current


def describe(isvc: Optional[dict]) -> str:
    """The last thing KServe said about the service, for error messages."""
    if not isvc:
        return "it does not exist"
    model_status = (isvc.get("status") or {}).get("modelStatus") or {}
    failure = model_status.get("lastFailureInfo") or {}
    if failure.get("message"):
        return f"{failure.get('reason', 'failure')}: {failure['message']}"
    ready = condition(isvc)
    if not ready:
        return "no Ready condition reported yet"
    text = ready.get("message") or ready.get("reason") or f"Ready={ready.get('status')}"
    return f"Ready={ready.get('status')}: {text}"


def wait_ready(get: Callable[[], Optional[dict]], namespace: str, name: str, timeout_seconds: float,
               poll_seconds: float = 5.0) -> dict:
    """Polls ``get()`` until the service is Ready; raises DeploymentError on failure or timeout."""
    deadline = clock() + timeout_seconds
    while True:
        isvc = get()
        if isvc and is_ready(isvc):
            return isvc
        transition = (((isvc or {}).get("status") or {}).get("modelStatus") or {}).get("transitionStatus")
        if transition in _FAILED_TRANSITIONS:
            raise DeploymentError(f"InferenceService {namespace}/{name} failed ({transition}): "
                                  f"{describe(isvc)}. Inspect it with `kubectl -n {namespace} describe "
                                  f"inferenceservice {name}`.")
        if clock() >= deadline:
            raise DeploymentError(f"InferenceService {namespace}/{name} was not Ready after "
                                  f"{timeout_seconds:g}s: {describe(isvc)}. Inspect it with `kubectl -n "
                                  f"{namespace} describe inferenceservice {name}`, or raise timeout_seconds.")
        sleep(poll_seconds)
