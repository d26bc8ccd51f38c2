"""Generates each component's README.md from its compiled spec, from one template.

Names, types, defaults and descriptions of inputs and outputs come from the compiled YAML (what
a consumer of the YAML gets; KFP takes the descriptions from the docstring's Args: and Returns:).
The summary and details come from the docstring's first paragraphs.
"""

import inspect
import json
import os
import re
import string
from typing import Any, Dict, List, Tuple

import docstring_parser

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "component_readme_template.md")
# Where a released component YAML can be fetched; each release is tagged <name>-v<version>.
RAW_REPOSITORY_URL = "https://raw.githubusercontent.com/prodml/prodml"

_PARAMETER_TYPES = {"STRING": "str", "NUMBER_INTEGER": "int", "NUMBER_DOUBLE": "float", "BOOLEAN": "bool",
                    "LIST": "list", "STRUCT": "dict"}
_ARTIFACT_CLASSES = {"system.Artifact": "Artifact", "system.Dataset": "Dataset", "system.Model": "Model",
                     "system.Metrics": "Metrics", "system.ClassificationMetrics": "ClassificationMetrics",
                     "system.HTML": "HTML", "system.Markdown": "Markdown"}


def describe(component: Any) -> Tuple[str, str]:
    """(summary, details): the first paragraph of a Python component's docstring and the rest before Args."""
    doc = docstring_parser.parse(inspect.getdoc(component.python_func) or "")
    return _one_line(doc.short_description or ""), (doc.long_description or "").strip()


def release_url(name: str, version: str) -> str:
    """The raw URL of a released component YAML, for kfp.components.load_component_from_url."""
    return f"{RAW_REPOSITORY_URL}/{name}-v{version}/manifests/components/{name}/component.yaml"


def render_readme(component: Any, component_ir: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """The README.md of one component: metadata, inputs/outputs tables, verified versions, usage."""
    summary, details = describe(component)
    name = meta["name"]
    inputs = component_ir["root"].get("inputDefinitions", {})
    outputs = component_ir["root"].get("outputDefinitions", {})
    with open(TEMPLATE, encoding="utf-8") as f:
        template = string.Template(f.read())
    text = template.substitute(
        name=name, summary=summary, details=details, version=meta["version"], stability=meta["stability"],
        image=meta["image"], source=meta["source"], last_verified=meta["last_verified"],
        inputs="\n".join(_input_rows(inputs)), outputs="\n".join(_output_rows(outputs)),
        verified_with="\n".join(f"| {lib} | {version} |" for lib, version in meta["verified_with"].items()),
        url=release_url(name, meta["version"]), **_usage(name, inputs))
    return re.sub(r"\n{4,}", "\n\n", text)  # an empty $details leaves a gap


def _input_rows(definitions: Dict[str, Any]) -> List[str]:
    rows = []
    for name, spec in _ordered(definitions):
        kind = _type_name(spec)
        if "defaultValue" in spec:
            default = f"`{_format_default(spec['defaultValue'], spec.get('parameterType'))}`"
        else:
            default = "optional" if spec.get("isOptional") else "**required**"
        rows.append(f"| `{name}` | {kind} | {default} | {_cell(spec.get('description', ''))} |")
    return rows


def _output_rows(definitions: Dict[str, Any]) -> List[str]:
    return [f"| `{name}` | {_type_name(spec)} | {_cell(spec.get('description', ''))} |"
            for name, spec in _ordered(definitions)]


def _ordered(definitions: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """Artifacts first, then parameters; required before optional; by name within each group."""
    entries = [(name, spec, 0) for name, spec in definitions.get("artifacts", {}).items()]
    entries += [(name, spec, 1) for name, spec in definitions.get("parameters", {}).items()]
    entries.sort(key=lambda e: (e[2], bool(e[1].get("isOptional")), e[0]))
    return [(name, spec) for name, spec, _ in entries]


def _type_name(spec: Dict[str, Any]) -> str:
    if "artifactType" in spec:
        return f"`{spec['artifactType']['schemaTitle']}` artifact"
    return f"`{_PARAMETER_TYPES.get(spec['parameterType'], spec['parameterType'])}`"


def _format_default(value: Any, parameter_type: str) -> str:
    if parameter_type == "NUMBER_INTEGER":
        value = int(value)
    return json.dumps(value)


def _usage(name: str, inputs: Dict[str, Any]) -> Dict[str, str]:
    """The pipeline arguments and body of a minimal pipeline using the component's required inputs."""
    args, body, call = [], [], []
    for input_name, spec in _ordered(inputs):
        if spec.get("isOptional"):
            continue
        if "artifactType" in spec:
            title = spec["artifactType"]["schemaTitle"]
            args.append(f"{input_name}_uri: str")
            body.append(f"    {input_name} = dsl.importer(artifact_uri={input_name}_uri, "
                        f"artifact_class=dsl.{_ARTIFACT_CLASSES.get(title, 'Artifact')})")
            call.append(f"{input_name}={input_name}.output")
        else:
            args.append(f"{input_name}: {_PARAMETER_TYPES.get(spec['parameterType'], 'str')}")
            call.append(f"{input_name}={input_name}")
    body.append(f"    {name}_task = {name}({', '.join(call)})")
    return {"pipeline_args": ", ".join(args), "pipeline_body": "\n".join(body)}


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")
