"""Container images the components run in.

Components name the runtime image as their ``base_image``; it is built from
``Dockerfile.runtime`` and ``requirements/runtime.lock`` and tagged with the package version.
infra_validate runs in the infra-validate image: the runtime image plus the serving environment
(``requirements/serving.lock``) as a second venv, where it starts the predictor
(``Dockerfile.runtime``, target ``infra-validate``). The predictor's own image is the serving image.
Override the registry with PRODML_IMAGE_REGISTRY when compiling for your cluster.
"""

import os

VERSION = "0.1.0"
REGISTRY = os.environ.get("PRODML_IMAGE_REGISTRY", "ghcr.io/prodml")
RUNTIME_IMAGE = f"{REGISTRY}/prodml-runtime-python3.11:{VERSION}"
SERVING_IMAGE = f"{REGISTRY}/prodml-serving-python3.11:{VERSION}"
INFRA_VALIDATE_IMAGE = f"{REGISTRY}/prodml-infra-validate-python3.11:{VERSION}"
