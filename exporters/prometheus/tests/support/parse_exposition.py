"""Parses an exposition with prometheus_client's parsers and prints it as JSON.

usage: parse_exposition.py text|openmetrics FILE
Floats are printed with repr() so they read back exactly (nan, inf and -inf included).
"""
import importlib.metadata
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text


def main():
    fmt, path = sys.argv[1], sys.argv[2]
    # newline="": the exposition's lines end at "\n" alone; a raw carriage return, valid in a
    # label value, must reach the parser as it is rather than be read as a line end.
    with open(path, encoding="utf-8", newline="") as f:
        data = f.read()
    parse = parse_openmetrics if fmt == "openmetrics" else parse_text
    families = []
    for fam in parse(data):
        families.append({
            "name": fam.name,
            "type": fam.type,
            "unit": fam.unit,
            "help": fam.documentation,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                for s in fam.samples
            ],
        })
    json.dump({"version": importlib.metadata.version("prometheus-client"), "families": families}, sys.stdout)


if __name__ == "__main__":
    main()
