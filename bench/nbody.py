"""How much slower a Raspberry Pi 4 runs Python than this machine: one published measurement.

The issue asks for the Pi's figures "scaled from a measured ratio". No Pi is reachable from
here, so the ratio is taken from a published run of a well-defined pure-Python workload on a
Raspberry Pi 4 and the same workload run here:

* Chaitanya Mehta, "Performance Analysis of Languages on Raspberry Pi"
  (https://chaitanyamehta.github.io/projects/performance-analysis-of-programming-languages):
  the N-body benchmark, five million steps, Raspberry Pi 4 Model B (4 GB, 1.5 GHz, headless,
  no heatsink, not throttled), Python: **158.263 s** with the performance governor.
* This module: the same problem (the five bodies of the outer solar system, the same
  symplectic step, dt = 0.01, five million steps), written here from the problem's statement
  in the Computer Language Benchmarks Game, in the plain style of its Python programs.

The page names neither its program's exact text nor its Python version (a Pi 4 of 2020 ran
Raspberry Pi OS Buster, whose Python is 3.7). So run this with Python 3.7 and with the agent's
Python; the ratio is 158.263 s over the time here, with that uncertainty stated beside it.

    python -m bench.nbody [--steps 5000000]
"""

from __future__ import annotations

import argparse
import sys
import time

PI_4_SECONDS = 158.263  # the page above, performance governor, 5,000,000 steps
PI_4_STEPS = 5_000_000

SOLAR_MASS = 4 * 3.141592653589793 ** 2
DAYS_PER_YEAR = 365.24


def bodies() -> list[list[float]]:
    """[x, y, z, vx, vy, vz, mass] of the Sun, Jupiter, Saturn, Uranus and Neptune."""
    d, m = DAYS_PER_YEAR, SOLAR_MASS
    return [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, m],
        [4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
         1.66007664274403694e-03 * d, 7.69901118419740425e-03 * d,
         -6.90460016972063023e-05 * d, 9.54791938424326609e-04 * m],
        [8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
         -2.76742510726862411e-03 * d, 4.99852801234917238e-03 * d,
         2.30417297573763929e-05 * d, 2.85885980666130812e-04 * m],
        [1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
         2.96460137564761618e-03 * d, 2.37847173959480950e-03 * d,
         -2.96589568540237556e-05 * d, 4.36624404335156298e-05 * m],
        [1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
         2.68067772490389322e-03 * d, 1.62824170038242295e-03 * d,
         -9.51592254519715870e-05 * d, 5.15138902046611451e-05 * m],
    ]


def energy(system: list[list[float]]) -> float:
    e = 0.0
    for i, (x1, y1, z1, vx, vy, vz, m1) in enumerate(system):
        e += 0.5 * m1 * (vx * vx + vy * vy + vz * vz)
        for x2, y2, z2, _vx, _vy, _vz, m2 in system[i + 1:]:
            dx, dy, dz = x1 - x2, y1 - y2, z1 - z2
            e -= m1 * m2 / (dx * dx + dy * dy + dz * dz) ** 0.5
    return e


def offset_momentum(system: list[list[float]]) -> None:
    px = py = pz = 0.0
    for b in system:
        px += b[3] * b[6]
        py += b[4] * b[6]
        pz += b[5] * b[6]
    sun = system[0]
    sun[3], sun[4], sun[5] = -px / SOLAR_MASS, -py / SOLAR_MASS, -pz / SOLAR_MASS


def advance(system: list[list[float]], dt: float, steps: int) -> None:
    pairs = [(system[i], system[j]) for i in range(len(system))
             for j in range(i + 1, len(system))]
    for _ in range(steps):
        for b1, b2 in pairs:
            dx, dy, dz = b1[0] - b2[0], b1[1] - b2[1], b1[2] - b2[2]
            d2 = dx * dx + dy * dy + dz * dz
            mag = dt / (d2 * d2 ** 0.5)
            m1, m2 = b1[6] * mag, b2[6] * mag
            b1[3] -= dx * m2
            b1[4] -= dy * m2
            b1[5] -= dz * m2
            b2[3] += dx * m1
            b2[4] += dy * m1
            b2[5] += dz * m1
        for b in system:
            b[0] += dt * b[3]
            b[1] += dt * b[4]
            b[2] += dt * b[5]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=PI_4_STEPS)
    args = ap.parse_args(argv)
    system = bodies()
    offset_momentum(system)
    before = energy(system)
    started = time.perf_counter()
    advance(system, 0.01, args.steps)
    took_s = time.perf_counter() - started
    print(f"energy {before:.9f} -> {energy(system):.9f}")  # the problem's check values
    print(f"Python {sys.version.split()[0]}: {args.steps:,} steps in {took_s:.2f} s")
    scaled_s = took_s * PI_4_STEPS / args.steps
    print(f"a Raspberry Pi 4 took {PI_4_SECONDS} s for {PI_4_STEPS:,} steps (published): "
          f"{PI_4_SECONDS / scaled_s:.2f} times this machine's time")


if __name__ == "__main__":
    main()
