"""Writes a seeded folder of photos at other sizes and aspect ratios, for bench/export_check.py
(issue 13): every shipped Tux Paint image once as it is, plus COPIES rescaled copies of randomly
chosen ones (longer side 32 to 3000 px, aspect ratio changed by 0.5x to 2x), half saved as JPEG
(quality 60-95, 4:4:4, 4:2:2 or 4:2:0 chroma, a quarter of them progressive), half as PNG.

  python3 bench/rescaled_photos.py OUT_DIR [--copies 200] [--seed 1]

Needs pillow (bench/requirements.txt).
"""

import argparse
import glob
import os
import random
import shutil

from PIL import Image


def on_white(path):
    image = Image.open(path).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("RGB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    shipped = sorted(glob.glob(os.path.join(here, "..", "examples", "data", "tuxpaint-dev", "*", "*.png")))
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for path in shipped:
        shutil.copy(path, os.path.join(args.out, os.path.basename(path)))
    for i in range(args.copies):
        image = on_white(rng.choice(shipped))
        longer = rng.randint(32, 3000)
        aspect = image.width / image.height * 2 ** rng.uniform(-1, 1)
        w, h = (longer, round(longer / aspect)) if aspect >= 1 else (round(longer * aspect), longer)
        image = image.resize((max(w, 1), max(h, 1)), Image.BICUBIC)
        name = os.path.join(args.out, f"copy-{i:03d}")
        if i % 2 == 0:
            image.save(name + ".jpg", quality=rng.choice([60, 75, 90, 95]),
                       subsampling=rng.choice([0, 1, 2]), progressive=rng.random() < 0.25)
        else:
            image.save(name + ".png")
    print(f"{len(shipped)} shipped images and {args.copies} copies in {args.out}")


if __name__ == "__main__":
    main()
