"""Write fuzz seeds from the golden Celery messages.

Each golden message gives two seeds: its body alone, and its untagged
headers as one line of JSON followed by the body.
"""
import base64
import json
import pathlib
import sys


def untag(value):
    kind, inner = value
    if kind == "A":
        return [untag(item) for item in inner]
    if kind == "F":
        return {key: untag(item) for key, item in inner.items()}
    return inner


def main(source, target):
    out = pathlib.Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(pathlib.Path(source).glob("*.json")):
        case = json.loads(path.read_text())
        body = base64.b64decode(case["body_b64"])
        headers = {key: untag(value)
                   for key, value in (case.get("headers") or {}).items()}
        (out / f"{path.stem}.body").write_bytes(body)
        line = json.dumps(headers, separators=(",", ":")).encode()
        (out / f"{path.stem}.msg").write_bytes(line + b"\n" + body)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
