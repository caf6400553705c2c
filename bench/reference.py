"""The Python side of bench/compare.sh: graft's jobs done the usual Python way, on the data that
graft's `compare` example wrote (same preprocessed images, embeddings, split and KNN vectors).

  reference.py bench DIR           embedding (onnxruntime), head (scikit-learn, Keras), KNN (scikit-learn, faiss)
  reference.py knn DIR             the KNN part of bench alone (graft's `compare --knn-only` writes DIR)
  reference.py e2e DATA DIR        folder -> trained recognizer: PIL, onnxruntime, scikit-learn
  reference.py measure -- CMD...   runs CMD; its last stdout line (JSON) plus wall time and peak RSS
  reference.py report WORK OUT     medians of the runs in WORK as a table, and as JSON in OUT

Each command but report prints one JSON object.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "zoo" / "efficientnet-lite0.onnx"
MANIFEST = json.loads((ROOT / "zoo" / "efficientnet-lite0.json").read_text())
K = 3


def session(threads=0):
    """onnxruntime on the zoo model; threads 0 is onnxruntime's default (one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])


def embed(sess, x):
    """The embedding tensor the zoo manifest names ('features'), for a batch."""
    feed = {sess.get_inputs()[0].name: x}
    return sess.run([MANIFEST["embedding"]["tensor"]], feed)[0]


def ms_per_image(sess, inputs, batch):
    """As graft's compare example: one untimed batch, then one timed pass over all inputs."""
    embed(sess, inputs[:batch])
    start = time.perf_counter()
    for i in range(0, len(inputs), batch):
        embed(sess, inputs[i : i + batch])
    return (time.perf_counter() - start) * 1e3 / len(inputs)


def accuracy(predicted, labels):
    return float(np.mean(np.asarray(predicted) == labels))


def vote(neighbour_labels, classes):
    """Majority class among each row's neighbours (graft breaks ties by summed similarity)."""
    counts = np.apply_along_axis(np.bincount, 1, neighbour_labels, minlength=classes)
    return counts.argmax(axis=1)


def bench(d):
    d = Path(d)
    inputs = np.load(d / "inputs.npy")
    emb, labels = np.load(d / "embeddings.npy"), np.load(d / "labels.npy")
    tr, va = np.load(d / "train.npy"), np.load(d / "val.npy")
    opts = json.loads((d / "train_options.json").read_text())
    out = {"embed_ms_per_image": {}}

    for name, threads in [("default", 0), ("1 thread", 1)]:
        sess = session(threads)
        out["embed_ms_per_image"][name] = {str(b): ms_per_image(sess, inputs, b) for b in (1, 32)}
    out["embed_max_abs_diff_vs_graft"] = float(np.abs(embed(sess, inputs) - emb[: len(inputs)]).max())

    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(emb[tr], labels[tr])
    seconds = time.perf_counter() - start
    out["sklearn_lr"] = {"seconds": seconds, "val_acc": accuracy(lr.predict(emb[va]), labels[va])}

    out["keras"] = keras_head(emb[tr], labels[tr], emb[va], labels[va], int(labels.max()) + 1, opts)

    out["knn"] = knn(d)
    print(json.dumps(out))


def knn(d):
    """KNN of graft's benchmark queries: scikit-learn brute cosine, and faiss's flat inner-product index."""
    d = Path(d)
    index, index_labels = np.load(d / "knn_index.npy"), np.load(d / "knn_labels.npy")
    queries, graft_answers = np.load(d / "knn_queries.npy"), np.load(d / "knn_graft.npy")
    classes = int(index_labels.max()) + 1
    out = {}

    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=K, metric="cosine", algorithm="brute").fit(index)
    start = time.perf_counter()
    answers = vote(index_labels[nn.kneighbors(queries, return_distance=False)], classes)
    out["sklearn"] = {"seconds": time.perf_counter() - start,
                      "agree_with_graft": accuracy(answers, graft_answers)}

    import faiss

    unit = index / np.linalg.norm(index, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    start = time.perf_counter()
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    answers = vote(index_labels[flat.search(q, K)[1]], classes)
    out["faiss"] = {"seconds": time.perf_counter() - start, "threads": faiss.omp_get_max_threads(),
                    "agree_with_graft": accuracy(answers, graft_answers)}
    return out


def keras_head(x, y, xv, yv, classes, opts):
    """graft's default head in Keras: softmax Dense, Adam, its epochs, batch size and early stopping."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    adam = opts["optimizer"]
    keras.utils.set_random_seed(opts["seed"])
    start = time.perf_counter()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(opts["learning_rate"], beta_1=adam["beta1"],
                                                  beta_2=adam["beta2"], epsilon=adam["eps"]),
                  loss="sparse_categorical_crossentropy")
    stop = keras.callbacks.EarlyStopping(patience=opts["patience"], restore_best_weights=True)
    history = model.fit(x, y, epochs=opts["epochs"], batch_size=opts["batch_size"],
                        validation_data=(xv, yv), callbacks=[stop], verbose=0)
    seconds = time.perf_counter() - start
    predicted = model.predict(xv, verbose=0).argmax(axis=1)
    return {"seconds": seconds, "epochs": len(history.history["loss"]), "val_acc": accuracy(predicted, yv)}


def load_image(path, spec):
    """graft's image preprocessing with PIL: alpha on white, bilinear (antialiased) resize, normalise."""
    from PIL import Image

    img = Image.open(path)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    img = img.convert("RGB").resize((spec["width"], spec["height"]), Image.BILINEAR)
    mean, std = (np.array(spec[k], dtype=np.float32) for k in ("mean", "std"))
    x = (np.asarray(img, dtype=np.float32) - mean) / std
    return x.transpose(2, 0, 1) if spec["layout"] == "NCHW" else x


def e2e(data, d):
    """Folder -> embeddings -> logistic regression, split as graft splits."""
    from sklearn.linear_model import LogisticRegression

    data, d = Path(data), Path(d)
    visible = lambda p: not p.name.startswith(".")
    classes = sorted(p for p in data.iterdir() if p.is_dir() and visible(p))
    files = [(f, c) for c, folder in enumerate(classes) for f in sorted(folder.iterdir()) if f.is_file() and visible(f)]
    names = [str(f.relative_to(data)) for f, _ in files]
    if names != (d / "files.txt").read_text().split("\n")[:-1]:
        sys.exit("the example files differ from graft's list")
    sess = session()
    x = np.stack([load_image(f, MANIFEST["input"]) for f, _ in files])
    emb = np.concatenate([embed(sess, x[i : i + 32]) for i in range(0, len(x), 32)])
    labels = np.array([c for _, c in files])
    tr, va = np.load(d / "train.npy"), np.load(d / "val.npy")
    lr = LogisticRegression(max_iter=1000).fit(emb[tr], labels[tr])
    graft_emb = np.load(d / "embeddings.npy")
    print(json.dumps({"val_acc": accuracy(lr.predict(emb[va]), labels[va]),
                      "embed_max_abs_diff_vs_graft": float(np.abs(emb - graft_emb).max())}))


def measure(cmd):
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit status {done.returncode}")
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"wall_s": wall, "max_rss_mb": peak_kib / 1024, "result": result}))


def machine():
    cpu, flags = platform.processor(), []
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        field = lambda name: next(l.split(":", 1)[1].strip() for l in lines if l.startswith(name))
        cpu, flags = field("model name"), field("flags").split()
    except (OSError, StopIteration):
        pass
    simd = [f for f in ("avx2", "avx512f") if f in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "os": platform.platform(),
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()]}


def report(work, out):
    work = Path(work)
    runs = lambda prefix: [json.loads(p.read_text()) for p in sorted(work.glob(f"{prefix}-[0-9]*.json"))]
    sides = {name: runs(name) for name in ("graft", "graft-ort", "reference", "e2e-graft", "e2e-graft-tract", "e2e-python")}

    def median(side, *path):
        values = []
        for run in sides[side]:
            for key in path:
                run = run.get(key) if isinstance(run, dict) else None
            if isinstance(run, (int, float)) and not isinstance(run, bool):
                values.append(run)
        return statistics.median(values) if values else None

    gpu = (sides["graft"][0].get("head", {}).get("gpu") or {}) if sides["graft"] else {}
    adapter = gpu.get("adapter", "").removeprefix("gpu: ").split(" (")[0]
    gpu_name = f"graft GPU ({adapter}" + (": software, a CPU emulation)" if gpu.get("software") else ")")
    head = lambda s, *p: (median(s, *p, "seconds"), median(s, *p, "val_acc"))
    pairs = []
    for b in ("1", "32"):
        what = f"embedding, batch {b} (ms/image)"
        pairs += [(what, "graft tract", median("graft", "embed_ms_per_image", b), "onnxruntime",
                   median("reference", "embed_ms_per_image", "default", b), "<= 1.5x", None),
                  (what, "graft ort", median("graft-ort", "embed_ms_per_image", b), "onnxruntime",
                   median("reference", "embed_ms_per_image", "default", b), "<= 1.0x", None),
                  (what, "graft tract", median("graft", "embed_ms_per_image", b), "onnxruntime, 1 thread",
                   median("reference", "embed_ms_per_image", "1 thread", b), "", None)]
    cpu_s, cpu_acc = head("graft", "head", "cpu")
    gpu_s, gpu_acc = head("graft", "head", "gpu")
    for ref, key, target in (("scikit-learn LogisticRegression", "sklearn_lr", "<= 0.5x"), ("Keras (tensorflow-cpu)", "keras", "")):
        ref_s, ref_acc = head("reference", key)
        pairs.append(("head training (s)", "graft CPU", cpu_s, ref, ref_s, target, (cpu_acc, ref_acc)))
        pairs.append(("head training (s)", gpu_name, gpu_s, ref, ref_s, "", (gpu_acc, ref_acc)))
    python = "PIL + onnxruntime + scikit-learn"
    e2e_n = sides["graft"][0].get("e2e_examples") if sides["graft"] else None
    for side, name in (("e2e-graft", f"graft train, defaults (auto: ONNX Runtime), {e2e_n} images"),
                       ("e2e-graft-tract", f"graft train --backend tract, {e2e_n} images")):
        acc = (median(side, "result", "training", "validation", "accuracy"), median("e2e-python", "result", "val_acc"))
        pairs += [("folder -> recognizer, wall (s)", name, median(side, "wall_s"), python,
                   median("e2e-python", "wall_s"), "<= 0.5x", acc),
                  ("folder -> recognizer, peak RSS (MB)", name, median(side, "max_rss_mb"), python,
                   median("e2e-python", "max_rss_mb"), "", None)]
    for ref, key, target in (("faiss-cpu IndexFlatIP", "faiss", "<= 1.0x"), ("scikit-learn brute cosine", "sklearn", "")):
        pairs.append((f"KNN, 1,000 queries, 10,000 x 1280, k={K} (s)", "graft CPU", median("graft", "knn", "seconds"), ref,
                      median("reference", "knn", key, "seconds"), target, None))

    fmt = lambda v: "n/a" if v is None else f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    rows = []
    for what, g, gv, r, rv, target, acc in pairs:
        ratio = gv / rv if gv is not None and rv else None
        rows.append({"measurement": what, "graft": g, "graft_value": gv, "reference": r, "reference_value": rv,
                     "ratio": ratio, "target": target, "val_acc": acc})
    m = machine()
    print(f"machine: {m['cpu']} ({', '.join(m['simd'])}), {m['cores']} cores, {m['os']}; "
          f"load average at the end {m['load_average_at_end']}")
    print(f"medians of {len(sides['graft'])} run(s); val acc = validation accuracy, graft / reference\n")
    print("| measurement | graft | reference | graft | reference | graft / reference | target | val acc |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = "" if r["val_acc"] is None else " / ".join(fmt(a) for a in r["val_acc"])
        ratio = "n/a" if r["ratio"] is None else f"{fmt(r['ratio'])}x"
        print(f"| {r['measurement']} | {r['graft']} | {r['reference']} | {fmt(r['graft_value'])} | "
              f"{fmt(r['reference_value'])} | {ratio} | {r['target']} | {acc} |")
    fetch = json.loads((Path(work) / "library-fetch.json").read_text())
    print(f"\none-time fetch of the ONNX Runtime library (graft engine install, not in the rows above): "
          f"{fetch['wall_s']:.1f} s")
    Path(out).write_text(json.dumps({"machine": m, "runs": sides, "rows": rows, "library_fetch": fetch}, indent=1) + "\n")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "bench":
        bench(*args)
    elif command == "knn":
        print(json.dumps(knn(*args)))
    elif command == "e2e":
        e2e(*args)
    elif command == "measure":
        measure(args[1:] if args[:1] == ["--"] else args)
    elif command == "report":
        report(*args)
    else:
        sys.exit(__doc__)
