"""The Python reference server of bench/serve.sh: what a Python user writes to serve an exported
model — FastAPI on uvicorn, ONNX Runtime, PIL — answering the same route as `graft serve`.

    python bench/serve_reference.py MODEL.onnx --port 8081 [--workers 1]

MODEL.onnx is graft's image-in export (uint8 RGB [N,H,W,3] in, probabilities out; the labels are in
its metadata), so the server decodes the posted image and runs the file: no preprocessing to
re-implement.
"""
import argparse
import io
import json
import os

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image

MODEL = os.environ.get("GRAFT_REFERENCE_MODEL", "")
app = FastAPI()
session = None
labels = []
name = ""


@app.on_event("startup")
def load():
    global session, labels, name
    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    name = os.path.splitext(os.path.basename(MODEL))[0]


def infer(body: bytes, top_k: int):
    try:
        image = Image.open(io.BytesIO(body)).convert("RGB")
    except Exception as e:  # noqa: BLE001 - any undecodable body is the caller's mistake
        raise HTTPException(status_code=400, detail=f"not an image: {e}")
    batch = np.asarray(image, dtype=np.uint8)[None]
    probs = session.run(["probabilities"], {session.get_inputs()[0].name: batch})[0][0]
    order = np.argsort(-probs)[:top_k]
    top = [{"label": labels[i], "probability": float(probs[i])} for i in order]
    return {"label": top[0]["label"], "probability": top[0]["probability"], "top_k": top}


@app.post("/v1/models/{model}/predict")
async def predict(model: str, request: Request, top_k: int = 3):
    if model != name:
        raise HTTPException(status_code=404, detail=f"no model named {model}")
    body = await request.body()
    return await run_in_threadpool(infer, body, top_k)


@app.get("/healthz")
def healthz():
    return {"ok": True}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ["GRAFT_REFERENCE_MODEL"] = os.path.abspath(args.model)
    MODEL = os.environ["GRAFT_REFERENCE_MODEL"]
    uvicorn.run("serve_reference:app" if args.workers > 1 else app, host="127.0.0.1",
                port=args.port, workers=args.workers, log_level="warning",
                app_dir=os.path.dirname(os.path.abspath(__file__)))
