"""How far a refiner's output strays near the image's edges, on maps it should return as they
are (decision 82).

    PYTHONPATH=. python benchmarks/border_error.py WEIGHTS [--size 512x768]

WEIGHTS: a weights file or "default". Each map is given as both inputs, so a refiner that
invents nothing returns it: a horizontal ramp, the same ramp reversed, and a flat wall with a
raised box. Reported per map, as the mean |output − input| over a row or column in units of
the map's range (after `Refiner`'s fit onto the low input): inside (8 px in from every edge),
the first and last four columns and the last four rows.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sddr_core import load_refiner


def test_maps(height: int, width: int) -> dict[str, np.ndarray]:
    ramp = np.tile(np.linspace(1, 2, width, dtype=np.float32), (height, 1))
    box = np.ones((height, width), np.float32)
    box[height * 2 // 5 : height * 3 // 5, width * 2 // 5 : width * 3 // 5] = 2
    return {"ramp": ramp, "ramp reversed": np.ascontiguousarray(ramp[:, ::-1]), "box": box}


def border_errors(refiner, depth: np.ndarray) -> dict[str, object]:
    error = np.abs(refiner.refine(depth, depth) - depth) / np.ptp(depth)

    def rounded(values):
        return [round(float(v), 4) for v in values]

    return {"inside": round(float(error[8:-8, 8:-8].mean()), 4),
            "first columns": rounded(error[:, :4].mean(0)),
            "last columns": rounded(error[:, -4:].mean(0)),
            "last rows": rounded(error[-4:].mean(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("--size", default="512x768", help="HEIGHTxWIDTH")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    refiner = load_refiner(args.weights, device="cpu", dtype="float32")
    report = {name: border_errors(refiner, depth)
              for name, depth in test_maps(height, width).items()}
    print(json.dumps({"weights": args.weights, "size": [height, width], **report}))


if __name__ == "__main__":
    main()
