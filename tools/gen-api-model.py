#!/usr/bin/env python3
"""Regenerates signaling/api/*.json from Kurento's module descriptors.

rkms embeds the API model (class names, hierarchy, constructors, methods,
properties, events, complex types) so that it can validate every request and
describe itself to clients. Only names and shapes are kept: documentation
strings are dropped.

Usage: tools/gen-api-model.py [DESCRIPTOR_DIR]   (default ../shared/kurento-api)
"""
import json
import pathlib
import sys

MODULES = ["core", "elements", "filters"]


def strip_docs(node):
    if isinstance(node, dict):
        return {k: strip_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [strip_docs(v) for v in node]
    return node


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "kurento-api"
    out = root / "signaling" / "api"
    out.mkdir(exist_ok=True)
    for module in MODULES:
        descriptor = json.loads((src / f"{module}.kmd.json").read_text())
        model = strip_docs(descriptor)
        (out / f"{module}.json").write_text(json.dumps(model, indent=1, sort_keys=True) + "\n")
        print(f"{module}: {len(model['remoteClasses'])} classes, {len(model['events'])} events, "
              f"{len(model['complexTypes'])} types")


if __name__ == "__main__":
    main()
