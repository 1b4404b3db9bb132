"""One-time cleaning: take the absolute paths of the machine that ran them out of committed
results and notebook outputs, writing what current code writes instead.

    python scripts/clean_paths.py          # rewrite in place, print what changed
    python scripts/clean_paths.py --check  # exit 1 if any absolute path is left

* a data file ``/.../shared/data/<relative>`` becomes ``<relative>`` (its SHA-256 stays beside it);
* ``"dir": <the data root>`` in zero-shot records is dropped (the files are relative to it);
* an embedded model's ``"source": /.../site-packages/<package>`` becomes ``"embedded: <wheel>"``,
  with the model's description and licence, as :func:`prunelib.model.provenance.model_record` writes;
* chapter 12's temporary folder ``/tmp/prunebook-ch10-*/`` disappears from the printed command, as
  the chapter now runs the command inside that folder with relative paths.

Numbers are never touched. Everything else that looks like an absolute path is reported.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from prunelib.model.embedded import EMBEDDED
from prunelib.model.provenance import absolute_paths

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = re.compile(r"/(?:[^/\s'\"]+/)*shared/data/")
CH10_TEMP = re.compile(r"/tmp/prunebook-ch10-[\w]+/")
DROP = object()


def _clean_value(key, value, parent: dict):
    if not isinstance(value, str) or not absolute_paths(value):
        return value
    if key == "dir" and DATA_FILE.match(value.rstrip("/") + "/"):
        return DROP
    if key == "source" and "site-packages" in value and parent.get("name") in EMBEDDED:
        model = EMBEDDED[parent["name"]]
        parent.setdefault("description", model.description)
        parent.setdefault("license", model.license)
        return f"embedded: {model.distribution}"
    return CH10_TEMP.sub("", DATA_FILE.sub("", value))


def _clean(node):
    if isinstance(node, dict):
        for key in list(node):
            value = _clean_value(key, node[key], node) if isinstance(node[key], str) else _clean(node[key])
            if value is DROP:
                del node[key]
            else:
                node[key] = value
    elif isinstance(node, list):
        node[:] = [_clean(item) if not isinstance(item, str) else _clean_value(None, item, {}) for item in node]
    return node


def clean_text(text: str) -> str:
    return CH10_TEMP.sub("", DATA_FILE.sub("", text))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    left: dict[str, list[str]] = {}
    for path in sorted((ROOT / "results").rglob("*")):
        if not path.is_file() or path.suffix not in (".json", ".md", ".txt", ".csv"):
            continue
        text = path.read_text()
        if not absolute_paths(text):
            continue
        if not check:
            if path.suffix == ".json":
                cleaned = json.dumps(_clean(json.loads(text)), indent=2) + ("\n" if text.endswith("\n") else "")
            else:
                cleaned = clean_text(text)
            path.write_text(cleaned)
            print(f"cleaned {path.relative_to(ROOT)}")
            text = cleaned
        if absolute_paths(text):
            left[str(path.relative_to(ROOT))] = absolute_paths(text)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        changed = False
        for cell in notebook["cells"]:
            for output in cell.get("outputs", []):
                for field, content in [("text", output.get("text")), *output.get("data", {}).items()]:
                    if not isinstance(content, (str, list)) or field.startswith("image/"):
                        continue
                    lines = [content] if isinstance(content, str) else content
                    if not any(absolute_paths(line) for line in lines):
                        continue
                    if not check:
                        lines = [clean_text(line) for line in lines]
                        cleaned = lines[0] if isinstance(content, str) else lines
                        if field == "text":
                            output["text"] = cleaned
                        else:
                            output["data"][field] = cleaned
                        changed = True
                    found = [p for line in lines for p in absolute_paths(line)]
                    if found:
                        left.setdefault(str(path.relative_to(ROOT)), []).extend(found)
        if changed:
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            print(f"cleaned {path.relative_to(ROOT)}")
    for name, paths in left.items():
        print(f"absolute paths left in {name}: {sorted(set(paths))[:5]}", file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
