"""Cross-check of an image-in export (issue 13) in Python: ONNX Runtime on the uint8 arrays PIL
decodes, against `graft predict --json` on the same files.

  python3 bench/export_check.py MODEL.onnx RECOGNIZER.safetensors FILE_OR_FOLDER...

Needs numpy, pillow and onnxruntime (bench/requirements.txt) and a built graft (cargo build
--release; GRAFT=path overrides). Prints one JSON object: images, top-1 agreements, the largest
probability difference, and the labels and input the file's metadata states.
"""

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def files(args):
    for a in args:
        if os.path.isdir(a):
            for root, _, names in os.walk(a):
                for n in sorted(names):
                    if n.lower().endswith((".png", ".jpg", ".jpeg")):
                        yield os.path.join(root, n)
        else:
            yield a


def rgb8(path):
    image = Image.open(path)
    if image.mode != "RGB":
        # graft composites alpha on white.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    model, recognizer, inputs = sys.argv[1], sys.argv[2], list(files(sys.argv[3:]))
    graft = os.environ.get("GRAFT", "target/release/graft")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    out = subprocess.run(
        [graft, "--json", "-q", "predict", recognizer, "-k", str(len(labels)), "--no-cache", *inputs],
        check=True, capture_output=True, text=True,
    )
    graft_answers = json.loads(out.stdout.strip().splitlines()[-1])["predictions"]
    same, worst, by_format, over = 0, 0.0, {}, 0
    for path, answer in zip(inputs, graft_answers):
        probs, label = session.run(["probabilities", "label"], {"image": rgb8(path)[None]})
        expected = dict(answer["top"])
        diff = max(abs(float(p) - expected[l]) for l, p in zip(labels, probs[0]))
        worst = max(worst, diff)
        over += diff > 2e-2
        ext = os.path.splitext(path)[1].lower().lstrip(".").replace("jpeg", "jpg")
        by_format[ext] = max(by_format.get(ext, 0.0), diff)
        same += labels[int(label[0])] == answer["label"]
    print(json.dumps({
        "images": len(inputs),
        "top1_agreements": same,
        "max_probability_difference": worst,
        "max_probability_difference_by_format": by_format,
        "over_2e-2": over,
        "labels": labels,
        "input": json.loads(meta["graft.input"]),
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
