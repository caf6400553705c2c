"""How far a smaller export's answers are from the float one's (issue 13), in ONNX Runtime on
the uint8 arrays PIL decodes: top-1 agreement, mean and largest probability difference, and the
embeddings' relative error (|e - e_float| / |e_float|, mean) and smallest cosine.

  python3 bench/compare_exports.py FLOAT.onnx SMALLER.onnx... --images FOLDER

Both files are image-in exports of one recognizer (`graft export`, `graft export --quantize
int8 --data ...`). Needs numpy, pillow and onnxruntime (bench/requirements.txt).
"""

import argparse
import json

import numpy as np
import onnxruntime as ort

from export_check import files, rgb8


def run(model, images):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    outs = [session.run(["probabilities", "embedding"], {"image": rgb8(p)[None]}) for p in images]
    return np.array([o[0][0] for o in outs]), np.array([o[1][0] for o in outs])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("float_model")
    parser.add_argument("smaller", nargs="+")
    parser.add_argument("--images", required=True)
    args = parser.parse_args()
    images = list(files([args.images]))
    p0, e0 = run(args.float_model, images)
    for model in args.smaller:
        p, e = run(model, images)
        norm = np.linalg.norm(e0, axis=1)
        cosine = (e * e0).sum(1) / np.linalg.norm(e, axis=1) / norm
        print(json.dumps({
            "model": model,
            "images": len(images),
            "top1_agreements": int((p.argmax(1) == p0.argmax(1)).sum()),
            "mean_probability_difference": float(np.abs(p - p0).mean()),
            "max_probability_difference": float(np.abs(p - p0).max()),
            "embedding_relative_error": float((np.linalg.norm(e - e0, axis=1) / norm).mean()),
            "min_embedding_cosine": float(cosine.min()),
        }))


if __name__ == "__main__":
    main()
