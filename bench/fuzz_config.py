"""Long fuzz run of the config loader (issue 13): ``python -m bench.fuzz_config --examples N``.

The suite runs the same property (tests/core/test_config_hardening.py) with a fixed budget of
300 mutated example configs; this runs it as long as asked. Any input that ends in anything
but a config or clean ``file:line: field: message`` issues is printed by hypothesis and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from hypothesis import HealthCheck, given, settings

from tests.core.test_config_hardening import (
    _mutated,
    test_mutated_example_configs_load_or_fail_cleanly,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=20_000)
    args = ap.parse_args()
    inner = test_mutated_example_configs_load_or_fail_cleanly.hypothesis.inner_test  # type: ignore[attr-defined]
    run = settings(max_examples=args.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))(given(_mutated())(inner))
    t0 = time.perf_counter()
    run()
    print(f"config loader: {args.examples} mutated example configs, no traceback, no secret "
          f"quoted, every issue with file and line ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
