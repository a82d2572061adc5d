#!/usr/bin/env python3
"""An independent implementation of docs/CANONICAL_JSON.md, for cross-checking.

It parses every test vector with Python's own json module and encodes it with
Python's own protobuf runtime, using classes that protoc generated from
proto/openexec/v1/canonical_json.proto. It shares no code with the TypeScript
encoder; test/canonical-json.spec.ts compares the two byte for byte.

Usage: canonical_json_encode.py GENERATED_DIR VECTORS_JSON

GENERATED_DIR is a `protoc --python_out` directory holding
openexec/v1/canonical_json_pb2.py. Prints one JSON object on stdout:
  {"protobuf": VERSION,
   "valid":   {name: {"hex": canonical hex, "sha256": digest} | {"error": reason}},
   "invalid": {name: reason | null}}    (null: the input was accepted)
"""

import hashlib
import json
import math
import sys

MAX_DEPTH = 32  # The nesting limit of the vectors (docs/CANONICAL_JSON.md, "Nesting").


class Refused(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def reject_duplicates(pairs):
    # json keeps the last of duplicate keys; the spec refuses them.
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise Refused("duplicate_key", "duplicate key %r" % key)
        obj[key] = value
    return obj


def reject_constant(name):
    # json accepts NaN, Infinity and -Infinity; RFC 8259 does not.
    raise Refused("body_malformed", "%s is not JSON" % name)


def parse(data):
    """Strict RFC 8259 parsing of UTF-8 bytes (docs/CANONICAL_JSON.md, section 2)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # one leading byte order mark is ignored
    try:
        text = data.decode("utf-8")  # strict: refuses overlongs, encoded surrogates, > U+10FFFF
    except UnicodeDecodeError as error:
        raise Refused("body_malformed", str(error))
    try:
        # parse_int=float as well: every number is the double nearest its text.
        # float(str) rounds correctly (ties to even) and gives inf on overflow.
        value = json.loads(
            text,
            object_pairs_hook=reject_duplicates,
            parse_constant=reject_constant,
            parse_float=float,
            parse_int=float,
        )
    except json.JSONDecodeError as error:
        raise Refused("body_malformed", str(error))
    check(value, 0)
    return value


def check(value, depth):
    """What json.loads lets through but the spec refuses."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Refused("body_malformed", "number out of the range of a double")
    elif isinstance(value, str):
        well_formed(value)
    elif isinstance(value, (dict, list)):
        depth += 1
        if depth > MAX_DEPTH:
            raise Refused("body_too_deep", "nesting deeper than %d" % MAX_DEPTH)
        if isinstance(value, dict):
            for key, item in value.items():
                well_formed(key)
                check(item, depth)
        else:
            for item in value:
                check(item, depth)


def well_formed(text):
    # json turns "\ud800" into a lone surrogate, which UTF-8 cannot encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("body_malformed", "lone surrogate")


def to_message(value, pb2, out=None):
    """Fills (or returns) a CanonicalValue for a parsed JSON value."""
    message = pb2.CanonicalValue() if out is None else out
    if value is None:
        message.null_value.SetInParent()
    elif isinstance(value, bool):  # before numbers: bool is an int in Python
        message.bool_value = value
    elif isinstance(value, float):
        # -0.0 + 0.0 is 0.0; every other double is unchanged.
        message.number_value = value + 0.0
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, dict):
        message.object_value.SetInParent()  # present even with no members
        for key in sorted(value, key=lambda k: k.encode("utf-8")):
            member = message.object_value.members.add()
            member.key = key
            to_message(value[key], pb2, member.value)
    elif isinstance(value, list):
        message.array_value.SetInParent()
        for item in value:
            to_message(item, pb2, message.array_value.values.add())
    else:
        raise TypeError("not a JSON value: %r" % (value,))
    return message


def input_bytes(vector):
    if "json_hex" in vector:
        return bytes.fromhex(vector["json_hex"])
    return vector["json"].encode("utf-8")


def main(argv):
    generated_dir, vectors_path = argv[1], argv[2]
    sys.path.insert(0, generated_dir)
    import google.protobuf
    from openexec.v1 import canonical_json_pb2 as pb2

    with open(vectors_path, encoding="utf-8") as f:
        vectors = json.load(f)

    valid = {}
    for vector in vectors["valid"]:
        try:
            value = parse(input_bytes(vector))
        except Refused as error:
            valid[vector["name"]] = {"error": error.reason}
            continue
        data = to_message(value, pb2).SerializeToString(deterministic=True)
        valid[vector["name"]] = {"hex": data.hex(), "sha256": hashlib.sha256(data).hexdigest()}

    invalid = {}
    for vector in vectors["invalid"]:
        try:
            parse(input_bytes(vector))
            invalid[vector["name"]] = None
        except Refused as error:
            invalid[vector["name"]] = error.reason

    json.dump({"protobuf": google.protobuf.__version__, "valid": valid, "invalid": invalid}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
