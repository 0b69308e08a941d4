#!/usr/bin/env python3.11
"""triage-probe URL: exit 0 if the URL answers 2xx within 3 s, else print why and exit 1.

The images' health probe for compose (curl is not in them):
    healthcheck: {test: ["CMD", "triage-probe", "http://127.0.0.1:8001/readyz"]}
"""

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    """Probe the one URL given; print the body of an answer that is not 2xx."""
    if len(argv) != 2:
        print("usage: triage-probe URL", file=sys.stderr)  # noqa: T201
        return 2
    try:
        with urllib.request.urlopen(argv[1], timeout=3) as answer:  # noqa: S310 (our own URL)
            return 0 if 200 <= answer.status < 300 else 1
    except urllib.error.HTTPError as error:
        print(f"{error.code}: {error.read(2000).decode(errors='replace')}")  # noqa: T201
    except OSError as error:
        print(f"no answer: {error}")  # noqa: T201
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
