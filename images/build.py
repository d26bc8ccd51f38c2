"""Builds the runtime, serving and infra-validate images with podman from Dockerfile.runtime and Dockerfile.serving.

Run by ``make images`` (official base) and ``make test-images`` (the local stand-in base)::

    python3 images/build.py [--base IMAGE] [--tag-suffix=-standin] [--ca-bundle FILE] [--pip-conf FILE]
                            [--no-cache] [--record benchmarks/results/images.json]

Tags are the names the components and manifests use (``prodml.components.common.images``) plus
``--tag-suffix``, so an image built on the stand-in base is never mistaken for a release image.
The infra-validate image is Dockerfile.runtime's ``infra-validate`` target: it shares the runtime
image's dependency layers (built first, so it reuses them from the cache).
Builds use the host network (pip and apt reach their indexes as the host does); the CA bundle and
pip.conf go in as build secrets, never into a layer. Prints each image's build time and size, and
with ``--record`` writes them as JSON. Standard library only: it runs before any venv exists.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import runpy
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = pathlib.Path(__file__).resolve().parent.parent
IMAGES_MODULE = REPO / "components" / "common" / "images.py"
DOCKERFILES = {"runtime": "Dockerfile.runtime", "serving": "Dockerfile.serving",
               "infra_validate": "Dockerfile.runtime"}
# The build stage of each image in a multi-stage Dockerfile.
TARGETS = {"runtime": "runtime", "infra_validate": "infra-validate"}


def image_names(suffix: str = "") -> Dict[str, str]:
    """The tag of each image: the name components and manifests use, plus ``suffix``."""
    names = runpy.run_path(str(IMAGES_MODULE))
    return {"runtime": names["RUNTIME_IMAGE"] + suffix, "serving": names["SERVING_IMAGE"] + suffix,
            "infra_validate": names["INFRA_VALIDATE_IMAGE"] + suffix}


def build_command(kind: str, tag: str, base: Optional[str], ca_bundle: Optional[str],
                  pip_conf: Optional[str], no_cache: bool) -> List[str]:
    """The ``podman build`` command line of one image."""
    cmd = ["podman", "build", "--network", "host", "--file", DOCKERFILES[kind], "--tag", tag]
    if kind in TARGETS:
        cmd += ["--target", TARGETS[kind]]
    if base:
        cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    if ca_bundle:
        cmd += ["--secret", f"id=ca_bundle,src={ca_bundle}"]
    if pip_conf:
        cmd += ["--secret", f"id=pip_conf,src={pip_conf}"]
    if no_cache:
        cmd += ["--no-cache"]
    return cmd + ["."]


def image_size(tag: str) -> int:
    """The image's size in bytes, as podman reports it (uncompressed layers)."""
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def podman_version() -> str:
    return subprocess.run(["podman", "--version"], check=True, capture_output=True, text=True).stdout.strip()


def build(kinds: List[str], suffix: str, base: Optional[str], ca_bundle: Optional[str], pip_conf: Optional[str],
          no_cache: bool, log_dir: pathlib.Path) -> Dict[str, dict]:
    """Builds each image in turn; returns its tag, build seconds and size. Exits on the first failure."""
    results = {}
    for kind in kinds:
        tag = image_names(suffix)[kind]
        log = log_dir / f"build-{kind}.log"
        cmd = build_command(kind, tag, base, ca_bundle, pip_conf, no_cache)
        print(f"==> {' '.join(cmd)}  (log: {log})", flush=True)
        start = time.monotonic()
        with open(log, "wb") as out:
            done = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        seconds = time.monotonic() - start
        if done.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            sys.exit(f"Building {tag} from {DOCKERFILES[kind]} failed (exit {done.returncode}); the end of "
                     f"{log}:\n" + "\n".join(tail))
        size = image_size(tag)
        results[kind] = {"tag": tag, "dockerfile": DOCKERFILES[kind], "build_seconds": round(seconds, 1),
                         "size_bytes": size, "size_mb": round(size / 1e6, 1)}
        note = ""
        if kind == "infra_validate":
            # Its dependency layers are the runtime image's: a node holding that image pulls only the rest.
            added = size - image_size(image_names(suffix)["runtime"])
            results[kind]["added_to_runtime_mb"] = round(added / 1e6, 1)
            note = f" ({added / 1e6:.0f} MB on top of the runtime image's layers)"
        print(f"    {tag}: {seconds:.0f} s, {size / 1e6:.0f} MB{note}", flush=True)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=None,
                        help="BASE_IMAGE build argument (default: the Dockerfiles' official python image).")
    parser.add_argument("--tag-suffix", default="", help="Appended to each image's tag.")
    parser.add_argument("--ca-bundle", default=None, help="A CA bundle pip trusts inside the build (a secret).")
    parser.add_argument("--pip-conf", default=None, help="A pip.conf used inside the build (a secret).")
    parser.add_argument("--no-cache", action="store_true", help="Rebuild every layer (for timing).")
    parser.add_argument("--only", choices=sorted(DOCKERFILES), action="append",
                        help="Build only this image (repeatable). Default: all three, the runtime image first.")
    parser.add_argument("--record", default=None, help="Write the build times and sizes to this JSON file.")
    parser.add_argument("--log-dir", default=os.environ.get("TMPDIR", "/tmp"), help="Where build logs go.")
    args = parser.parse_args(argv)
    for option, path in (("--ca-bundle", args.ca_bundle), ("--pip-conf", args.pip_conf)):
        if path and not os.path.isfile(path):
            parser.error(f"{option} {path}: no such file. Give an existing file or leave the option out.")

    # The machine's load when the builds start: build times are only comparable on a quiet machine.
    load_at_start = round(os.getloadavg()[0], 2)
    log_dir = pathlib.Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    kinds = [kind for kind in DOCKERFILES if not args.only or kind in args.only]
    results = build(kinds, args.tag_suffix, args.base, args.ca_bundle, args.pip_conf,
                    args.no_cache, log_dir)
    if args.record:
        record = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "podman": podman_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": load_at_start,
            "machine": platform.machine(),
            "base_image": args.base or "(the Dockerfiles' default)",
            "base_size_bytes": image_size(args.base) if args.base else None,
            "no_cache": args.no_cache,
            "images": results,
        }
        pathlib.Path(args.record).write_text(json.dumps(record, indent=2) + "\n")
        print(f"==> recorded in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
