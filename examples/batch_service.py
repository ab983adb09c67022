"""A minimal batch job: recognise the emotion of every file given and print JSON.

Usage: python batch_service.py a.wav b.mp3 ...
"""

import json
import sys

from emotion2vec_plus import Emotion2VecPlus

model = Emotion2VecPlus(model_name="large")

results = []
for path in sys.argv[1:]:
    emb = model.extract_embedding(path)
    scores = model.classify_embedding(emb)
    emotion, confidence = max(scores.items(), key=lambda x: x[1])
    results.append({"file": path, "emotion": emotion, "confidence": confidence, "scores": scores})

print(json.dumps(results, ensure_ascii=False, indent=2))
