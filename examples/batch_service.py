"""A minimal batch job: recognise the emotion of every file given and print JSON.

Usage: python batch_service.py [--model NAME] a.wav b.mp3 ...

NAME defaults to the bundled compact model (works offline); ``--model large`` uses emotion2vec+
large (downloaded on first use).
"""

import argparse
import json

from emotion2vec_plus import Emotion2VecPlus

parser = argparse.ArgumentParser(description="Recognise the emotion of every file given and print JSON.")
parser.add_argument("--model", default="compact", help="compact (bundled, default), seed, base, large, or a directory")
parser.add_argument("files", nargs="+")
args = parser.parse_args()

model = Emotion2VecPlus(model_name=args.model)

results = []
for path in args.files:
    emb = model.extract_embedding(path)
    scores = model.classify_embedding(emb)
    emotion, confidence = max(scores.items(), key=lambda x: x[1])
    results.append({"file": path, "emotion": emotion, "confidence": confidence, "scores": scores})

print(json.dumps(results, ensure_ascii=False, indent=2))
