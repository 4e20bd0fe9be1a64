"""Regenerate docs/results.md: `sddr eval` on the development benchmark, table and figures.

    python benchmarks/results.py [--data ../shared/data/middlebury2006-half]

Runs the documented evaluation (simulated predictor, seed 0, Boost ORD) into results/, then
rewrites docs/results.md with the command, the versions and the mean table, and copies the
bar chart and one example panel (as JPEG) to docs/img/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import date
from pathlib import Path

import cv2
import torch

import sddr_core
from sddr_core.cli.main import main as sddr

ROOT = Path(__file__).resolve().parents[1]


def run(data: Path, out: Path, methods: str, weights: str | None, example: str) -> None:
    def command(show) -> list[str]:
        return (["eval", "--dataset", "middlebury2006", show(data), "--predictor", "simulated",
                 "--seed", "0", "--methods", methods, "-o", show(out)]
                + (["--weights", weights] if weights else []))

    if sddr(command(str)) != 0:
        sys.exit("sddr eval failed")
    images = ROOT / "docs" / "img"
    images.mkdir(exist_ok=True)
    shutil.copyfile(out / "metrics.png", images / "results-middlebury2006.png")
    panel = cv2.imread(str(out / "figures" / f"{example}.png"))  # JPEG keeps the docs small
    cv2.imwrite(str(images / f"results-{example}.jpg"), panel, [cv2.IMWRITE_JPEG_QUALITY, 85])
    table = (out / "metrics.md").read_text()
    shown = " ".join(["sddr"] + command(_shown))
    (ROOT / "docs" / "results.md").write_text(f"""# Results on the development benchmark

Middlebury 2006, half size (12 scenes, `../shared/data/middlebury2006-half`), inputs from the
simulated predictor ([simulator.md](simulator.md)): low at its training resolution r̂ = 384 px,
high at the image's long side but at least 2·r̂ (768 px here). Metrics as in
[metrics.md](metrics.md): least-squares alignment in disparity space, every metric in depth
(mm), Boost's superpixel ORD and D³R. `low` is the low prediction up-sampled (bicubic), `high`
the high prediction, `guided` GBDF's guided-filter fusion of the two.

Regenerate (about half a minute on 2 CPU cores): `python benchmarks/results.py`, which runs

    {shown}

and rewrites this page. Last run: {date.today().isoformat()}, sddr {sddr_core.__version__}, torch
{torch.__version__}.

{table}
There are no trained weights yet, so there is no `sddr` row; it is added with
`python benchmarks/results.py --methods low,high,guided,sddr --weights FILE`.

![mean metrics per method](img/results-middlebury2006.png)

Example panel ({example}): inverse depth of the ground truth and of each method after alignment
(one colour range), and each method's relative error |d − d*| / d* (one range); grey = no
ground truth.

![{example}](img/results-{example}.jpg)
""")
    print(f"wrote {ROOT / 'docs' / 'results.md'}")


def _shown(path: Path) -> str:
    """`path` as a reader at the repository root would type it."""
    path = path.resolve()
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        if path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return str(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "middlebury2006-half")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "middlebury2006-half")
    parser.add_argument("--methods", default="low,high,guided")
    parser.add_argument("--weights")
    parser.add_argument("--example", default="aloe", help="scene whose panel the page shows")
    args = parser.parse_args()
    run(args.data, args.out, args.methods, args.weights, args.example)
