#!/usr/bin/python3
"""check_schema.py SCHEMA LOG [MIN]: validate every line of LOG, as written by
`mosquitto_sub -v` ("<topic> <json>"), against the JSON Schema SCHEMA
(draft 2020-12, with date-time formats checked). Exits 1 naming the first
line that does not validate, or when fewer than MIN lines (default 1) were
checked. Uses Debian's python3-jsonschema."""
import json
import sys

import jsonschema


def main():
    schema_path, log_path = sys.argv[1], sys.argv[2]
    need = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    with open(schema_path) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    n = 0
    with open(log_path, errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            topic, _, payload = line.rstrip("\n").partition(" ")
            try:
                obj = json.loads(payload)
            except ValueError as e:
                print(f"{log_path}:{lineno}: {topic}: not JSON: {e}")
                return 1
            errors = sorted(validator.iter_errors(obj), key=str)
            if errors:
                print(f"{log_path}:{lineno}: {topic}: {errors[0].message} "
                      f"(at {'/'.join(map(str, errors[0].absolute_path)) or 'top'})")
                return 1
            n += 1
    print(f"{log_path}: {n} messages valid against {schema_path}")
    return 0 if n >= need else 1


if __name__ == "__main__":
    sys.exit(main())
